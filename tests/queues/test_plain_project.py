"""A worker of a project without LOGGING (docs/queues/quickstart.md): what it prints."""

import pytest

from tests.processes import PROJECT_DIR
from tests.queues import tasks as queue_tasks

# A startproject-like settings module: DEBUG on, no LOGGING (Django's own console handler shows
# django.* lines), the queue tests' tasks registered.
PLAIN_SETTINGS = """
SECRET_KEY = "plain-project"
DEBUG = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "queues", "django_rq"]
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {database!r}}}}}
IMPRESSIONS_REDIS_URL = {markers!r}  # where tests.queues.tasks leave their markers
TASKS = {tasks!r}
RQ_QUEUES = {rq_queues!r}
RQ = {{"JOB_CLASS": "queues.rq.worker.TaskJob"}}
"""


@pytest.fixture
def plain_project(request, settings, tmp_path):
    """The environment of a plain project's worker on the test queue of one backend (the test's
    `backend` parameter), with this process's TASKS pointing at the same queue (MAX_ATTEMPTS 1: a
    failure is final; a task times out after 1 s). On SQS the burst polls short (WAIT_TIME_SECONDS
    0): the task's message is there before the worker starts, and the empty receive that ends the
    burst returns at once instead of after a long poll."""
    backend = request.node.callspec.params["backend"]
    request.getfixturevalue("rq_url" if backend == "rq" else "sqs")
    default = settings.TASKS["default"]
    options = {**default["OPTIONS"], "MAX_ATTEMPTS": 1, "JOB_TIMEOUT": 1}
    if backend == "sqs":
        options["WAIT_TIME_SECONDS"] = 0
    settings.TASKS = {"default": {**default, "OPTIONS": options}}
    (tmp_path / "plain_settings.py").write_text(
        PLAIN_SETTINGS.format(
            database=str(tmp_path / "db.sqlite3"),
            markers=settings.IMPRESSIONS_REDIS_URL,
            tasks=settings.TASKS,
            rq_queues=getattr(settings, "RQ_QUEUES", {}),
        )
    )
    return {"DJANGO_SETTINGS_MODULE": "plain_settings", "PYTHONPATH": f"{tmp_path}:{PROJECT_DIR}"}


@pytest.mark.parametrize(
    ("backend", "outcome", "error"),
    [
        ("rq", "failed", "RuntimeError: task plain fails on purpose"),
        ("sqs", "failed", "RuntimeError: task plain fails on purpose"),
        # Where the task was when JOB_TIMEOUT stopped it (RQ's own logger prints it on RQ).
        ("sqs", "timed-out", "TaskTimeout: the task ran past JOB_TIMEOUT (1 s)"),
    ],
)
def test_the_traceback_of_a_task_that_failed_is_printed_once(
    plain_project, manage, backend, outcome, error
):
    # Django's own receiver of task_finished logged a failure with its exception too: twice.
    if outcome == "failed":
        queue_tasks.fail_always.enqueue("plain")
    else:
        queue_tasks.slow_marker.enqueue("plain", 5)
    result = manage("runworker", "--burst", env=plain_project)
    assert result.returncode == 0, result.stderr
    assert queue_tasks.markers() == ["failed:plain" if outcome == "failed" else "start:plain"]
    assert f"outcome={outcome}" in result.stderr
    assert result.stderr.count(error) == 1, result.stderr
    assert result.stderr.count("Traceback (most recent call last)") == 1, result.stderr
