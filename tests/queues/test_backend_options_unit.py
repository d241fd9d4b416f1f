"""What both queue backends share, without a server: retry options, the task allow-list."""

import sys

import pytest
from django.tasks import task_backends

from queues.exceptions import QueueConfigurationError, RefusedJob, TaskNotAllowed
from queues.execution import is_allowed
from tests.queues import tasks as queue_tasks
from tests.queues.rq.support import RQ_BACKEND, rq_settings
from tests.queues.sqs.support import SQS_BACKEND

BACKENDS = {
    RQ_BACKEND: {},
    SQS_BACKEND: {"QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/q"},
}


@pytest.fixture(params=list(BACKENDS))
def configure(request, settings):
    """configure(**options): TASKS['jobs'] of each of our backends, with those OPTIONS."""
    settings.RQ_QUEUES = rq_settings("redis://127.0.0.1:1/0")["RQ_QUEUES"]

    def backend(**options):
        settings.TASKS = {
            "jobs": {"BACKEND": request.param, "OPTIONS": {**BACKENDS[request.param], **options}}
        }
        return task_backends["jobs"]

    return backend


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"MAX_ATTEMPTS": 0}, "MAX_ATTEMPTS"),
        ({"MAX_ATTEMPTS": "3"}, "MAX_ATTEMPTS"),
        ({"RETRY_DELAY": -1}, "RETRY_DELAY"),
        ({"RETRY_DELAY": 901}, "RETRY_DELAY"),
        ({"TASK_MODULES": "tests.queues"}, "TASK_MODULES"),
        ({"TASK_MODULES": ["tests/queues"]}, "TASK_MODULES"),
    ],
)
def test_bad_retry_and_allow_list_options_name_the_alias(configure, options, named):
    backend = configure(**options)
    [error] = backend.check()
    assert error.id == "queues.E005"
    assert error.msg.startswith(f"TASKS['jobs']['OPTIONS']: {named}=")
    with pytest.raises(QueueConfigurationError, match=rf"TASKS\['jobs'\].*{named}"):
        queue_tasks.record_marker.using(backend="jobs").enqueue("never")


def test_every_bad_option_is_reported_in_one_check_run(configure):
    backend = configure(MAX_ATTEMPTS=0, RETRY_DELAY="10", JOB_TIMEOUT=0, TYPO=1)
    ids = [error.id for error in backend.check()]
    assert ids == ["queues.E004", "queues.E005", "queues.E005", "queues.E005"]


def test_the_retry_delay_doubles_up_to_fifteen_minutes(configure):
    backend = configure(MAX_ATTEMPTS=8, RETRY_DELAY=10)
    assert backend.max_attempts == 8
    assert [backend.retry_delay(n) for n in range(1, 9)] == [10, 20, 40, 80, 160, 320, 640, 900]
    assert configure().max_attempts == 3  # the default


def test_rq_jobs_carry_the_retry_countdown(settings):
    for name, value in rq_settings("redis://127.0.0.1:1/0").items():
        setattr(settings, name, value)
    policy = task_backends["default"].retry_policy()
    assert (policy.max, policy.intervals) == (2, [10, 20])
    settings.TASKS = rq_settings("redis://127.0.0.1:1/0", MAX_ATTEMPTS=1)["TASKS"]
    assert task_backends["default"].retry_policy() is None


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("tests.queues.tasks.record_marker", True),
        ("tests.queues.tasks", True),
        ("tests.queues.tasksx.record_marker", False),  # a prefix ends at a dot
        ("tests.queues.side_effect_on_import.harmless", False),
        ("os.system", False),
    ],
)
def test_a_prefix_allows_its_modules_only(path, allowed):
    assert is_allowed(path, ["impressions", "tests.queues.tasks"]) is allowed


def test_installed_apps_and_task_modules_are_allowed(configure):
    backend = configure(TASK_MODULES=["tests.queues.tasks"])
    allowed = backend.allowed_task_modules()
    assert {"impressions", "casusult", "queues", "django.contrib.admin"} <= set(allowed)
    assert "tests.queues.tasks" in allowed
    assert backend.load_task("tests.queues.tasks.record_marker") is queue_tasks.record_marker
    assert "tests.queues.tasks" not in configure().allowed_task_modules()


def test_a_path_outside_the_allow_list_is_refused_without_importing_it(configure):
    backend = configure(TASK_MODULES=["tests.queues.tasks"])
    sys.modules.pop(queue_tasks.SIDE_EFFECT_MODULE, None)
    for path in (f"{queue_tasks.SIDE_EFFECT_MODULE}.harmless", "os.system", "subprocess.run"):
        with pytest.raises(TaskNotAllowed, match="outside the allowed modules"):
            backend.load_task(path)
    assert queue_tasks.SIDE_EFFECT_MODULE not in sys.modules
    with pytest.raises(RefusedJob, match=r"not a django\.tasks Task"):
        backend.load_task("tests.queues.tasks.not_a_task")  # allowed, imported, then refused
