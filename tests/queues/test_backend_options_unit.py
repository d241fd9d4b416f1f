"""What both queue backends share, without a server: retry options, the task registry."""

import sys

import pytest
from django.tasks import task, task_backends
from django.tasks.exceptions import InvalidTask

from queues.exceptions import QueueConfigurationError, TaskNotAllowed
from tests.queues import tasks as queue_tasks
from tests.queues.rq.support import RQ_BACKEND, rq_settings
from tests.queues.sqs.support import SQS_BACKEND
from tests.queues.taskapp import tasks as app_tasks

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


def test_the_registry_holds_the_apps_tasks_modules_and_task_modules(configure):
    registry = configure(TASK_MODULES=["tests.queues.tasks"]).task_registry()
    # Autodiscovered: each installed app's tasks module (an app without one is fine).
    assert registry["tests.queues.taskapp.tasks.discovered_marker"] is app_tasks.discovered_marker
    assert "impressions.tasks.flush_impressions_task" in registry
    # Listed: the modules of TASK_MODULES.
    assert registry["tests.queues.tasks.record_marker"] is queue_tasks.record_marker
    assert "tests.queues.tasks.not_a_task" not in registry  # a plain function
    assert "tests.queues.tasks.record_marker" not in configure().task_registry()


def test_task_modules_are_modules_to_import_not_prefixes(configure):
    with pytest.raises(QueueConfigurationError, match=r"TASKS\['jobs'\].*'tests\.queues\.nope'"):
        configure(TASK_MODULES=["tests.queues.nope"]).task_registry()
    registry = configure(TASK_MODULES=["tests.queues"]).task_registry()
    assert "tests.queues.tasks.record_marker" not in registry  # a package lists no submodule


def test_a_task_module_the_workers_would_register_nothing_from_is_a_check_error(configure):
    # Builds before the registry read TASK_MODULES as prefixes (["reports"] allowed every task
    # under reports/): kept over an upgrade, such a package registers none of its submodules'.
    backend = configure(
        TASK_MODULES=["tests.queues.tasks", "tests.queues", "tests.queues.tasks_raising_on_import"]
    )
    errors = backend.check()
    assert [error.id for error in errors] == ["queues.E010", "queues.E010"]
    package, raising = (error.msg for error in errors)
    assert package.startswith("TASKS['jobs']['OPTIONS']['TASK_MODULES'] lists 'tests.queues',")
    assert "defines no task" in package
    assert "'tests.queues.tasks_raising_on_import', which cannot be imported" in raising
    assert "redis://:***@cache:6379/0 is down" in raising and "s3cret" not in raising
    assert configure(TASK_MODULES=["tests.queues.tasks"]).check() == []


def test_a_path_outside_the_registry_is_refused_without_importing_anything(configure, monkeypatch):
    backend = configure(TASK_MODULES=["tests.queues.tasks"])
    # The example: a module of an installed app's package with side effects on import.
    monkeypatch.delitem(sys.modules, "casusult.gunicorn_conf", raising=False)
    monkeypatch.delitem(sys.modules, queue_tasks.SIDE_EFFECT_MODULE, raising=False)
    paths = (
        "casusult.gunicorn_conf.bind",
        f"{queue_tasks.SIDE_EFFECT_MODULE}.harmless",
        "tests.queues.tasks.not_a_task",
        "os.system",
        "subprocess.run",
    )
    for path in paths:
        with pytest.raises(TaskNotAllowed, match="is not registered"):
            backend.load_task(path)
    assert "casusult.gunicorn_conf" not in sys.modules
    assert queue_tasks.SIDE_EFFECT_MODULE not in sys.modules


def unregistered(name):
    """A module-level function of no tasks module and no TASK_MODULES entry."""


def test_enqueueing_an_unregistered_task_fails_at_once(configure):
    backend = configure(TASK_MODULES=["tests.queues.tasks"])
    with pytest.raises(InvalidTask, match="is not registered"):
        backend.require_registered(task(unregistered, backend="jobs"))
    backend.require_registered(queue_tasks.record_marker)


def test_a_backend_without_this_app_installed_is_an_error_naming_it(configure, settings):
    # Without "queues" in INSTALLED_APPS there is no runworker, so nothing runs the tasks; the
    # RQ backend's checks used to crash (ValueError: 'queues' is not in list) when django_rq was
    # installed without it.
    settings.INSTALLED_APPS = [app for app in settings.INSTALLED_APPS if app != "queues"]
    backend = configure()
    errors = [error for error in backend.check() if error.id == "queues.E011"]
    assert [error.msg for error in errors] == [
        f"TASKS['jobs'] is a backend of the queues app ({type(backend).__name__}) and 'queues'"
        " is not in INSTALLED_APPS: manage.py runworker, which runs its tasks, does not exist."
    ]
    assert errors[0].hint == "Add 'queues' to INSTALLED_APPS (before 'django_rq')."
    assert "queues.W006" not in [error.id for error in backend.check()]
