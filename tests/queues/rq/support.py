"""Helpers for the RQ tests: the backend's dotted path, in-process and subprocess workers."""

import contextlib
import signal
import time

import redis
from django.core.checks import ERROR, run_checks
from django.tasks import task_backends
from django.test import override_settings

from queues.rq.connection import JSON_SERIALIZER
from queues.rq.worker import RQWorker
from tests.queues import tasks as queue_tasks
from tests.settings_modules import load_settings

RQ_BACKEND = "queues.rq.backend.RQBackend"
# settings.test's TEST_TASK_MODULES: the tests' tasks, which are in no installed app's tasks module.
TEST_TASK_MODULES = ["tests.queues.tasks"]


def rq_settings(url, *, alias="default", queue="default", **options):
    """TASKS and RQ_QUEUES (for override_settings) of an RQ backend on the Redis at `url`, with
    the test tasks registered."""
    options = {"TASK_MODULES": TEST_TASK_MODULES, **options}
    return {
        "TASKS": {alias: {"BACKEND": RQ_BACKEND, "QUEUES": [queue], "OPTIONS": options}},
        "RQ_QUEUES": {queue: {"URL": url, "SERIALIZER": JSON_SERIALIZER}},
    }


@contextlib.contextmanager
def rq_on(url, settings):
    """The RQ backend (pytest-django's `settings`) on the Redis at `url` with the test tasks; its
    database and the tasks' markers emptied before and after."""
    connection = redis.Redis.from_url(url)
    connection.flushdb()
    queue_tasks.markers_client().delete(queue_tasks.MARKERS)
    for name, value in rq_settings(url, TASK_MODULES=settings.TEST_TASK_MODULES).items():
        setattr(settings, name, value)
    yield url
    connection.flushdb()
    queue_tasks.markers_client().delete(queue_tasks.MARKERS)
    connection.close()


def run_burst(**options):
    """Run an RQWorker of TASKS['default'] in this process until its queues are empty."""
    return RQWorker(task_backends["default"], burst=True, **options).run()


def worker_env(url, **extra):
    """The environment of a `runworker` subprocess on the RQ Redis at `url`."""
    return {"QUEUE_BACKEND": "rq", "RQ_REDIS_URL": url, **extra}


def check_errors(url, deploy=False):
    """The errors `manage.py check` (with --deploy: `check --deploy`) reports with the environment
    worker_env(url), one text each as the command prints it: settings.test loaded afresh with that
    environment, its task and RQ settings checked in this process."""
    loaded = load_settings("settings.test", worker_env(url))
    names = ("TASKS", "RQ_QUEUES", "RQ_REDIS_URL")
    with override_settings(**{name: getattr(loaded, name) for name in names}):
        found = run_checks(include_deployment_checks=deploy)
    return "\n".join(str(error) for error in found if error.level >= ERROR)


# An ElastiCache Serverless endpoint (always cluster mode); it does not resolve.
SERVERLESS = "rediss://casusult-jobs-x1y2z3.serverless.apne1.cache.amazonaws.com:6379"


def within(seconds, condition):
    """Wait until condition() is true, for `seconds` at most (the test's asserts then say why)."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def stopped_by_a_second_sigterm(process, marker):
    """Once the task of a `runworker` `process` has recorded `marker`, a SIGTERM, then another
    1.5 s later (a second stop, not the same one arriving twice): the worker exits 1, within 5 s
    of the second. Returns its stderr."""
    within(20, lambda: marker in queue_tasks.markers() or process.poll() is not None)
    process.send_signal(signal.SIGTERM)
    time.sleep(1.5)
    stopped_at = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1, stderr
    assert time.monotonic() - stopped_at < 5, stderr
    return stderr
