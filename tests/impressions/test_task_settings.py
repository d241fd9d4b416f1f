"""IMPRESSIONS_TASK_BACKEND and IMPRESSIONS_TASK_QUEUE: the flush and roll-up tasks go where they
say, and a backend without that queue is a check error naming them, reported beside every other
bad setting (not a traceback from django.tasks at import); enqueueing then raises the same. Each
case runs in a fresh interpreter: the tasks are defined once, at import."""

import textwrap

from tests.processes import run_python

# A project of the impressions app alone on a backend whose queues are "tasks" and "bulk";
# EXTRA (the case's settings) is defined before it.
SETUP = """
import django
from django.conf import settings

settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "impressions"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    TASKS={"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend",
                       "QUEUES": ["tasks", "bulk"]}},
    USE_TZ=True,
    **EXTRA,
)
django.setup()
"""

ENQUEUE = """
from django.tasks import task_backends

from impressions import tasks

tasks.enqueue_flush()
(result,) = task_backends["default"].results
print("queue", result.task.queue_name, tasks.rollup_impressions_task.queue_name)
"""

CHECK = """
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from impressions import tasks

try:
    tasks.enqueue_flush()
except ImproperlyConfigured as error:
    print("enqueue refused:", error)
call_command("check")
"""


def run(body, **extra):
    script = f"EXTRA = {extra!r}\n" + textwrap.dedent(SETUP) + textwrap.dedent(body)
    return run_python(script, timeout=60)


def start(**extra):
    return run(ENQUEUE, **extra)


def check(**extra):
    # With another bad setting, which the same check run must report too.
    return run(CHECK, IMPRESSIONS_DEDUP_WINDOW=-1, **extra)


def test_the_tasks_go_to_the_queue_the_setting_names():
    found = start(IMPRESSIONS_TASK_QUEUE="bulk")
    assert found.returncode == 0, found.stderr
    assert "queue bulk bulk" in found.stdout


def test_a_backend_without_the_queue_is_a_check_error_naming_the_settings():
    # The default queue name, "default", is not among the backend's QUEUES.
    found = check()
    assert found.returncode != 0
    assert "enqueue refused: The impressions tasks go to" in found.stdout, found.stdout
    errors = found.stderr[found.stderr.index("SystemCheckError") :]
    assert "impressions.E007" in errors
    assert "IMPRESSIONS_TASK_QUEUE='default'" in errors and "its queues: bulk, tasks" in errors
    assert "impressions.E005" in errors  # the other bad setting, in the same run


def test_an_unknown_backend_alias_is_named_too():
    found = check(IMPRESSIONS_TASK_BACKEND="flushes", IMPRESSIONS_TASK_QUEUE="tasks")
    assert found.returncode != 0
    errors = found.stderr[found.stderr.index("SystemCheckError") :]
    assert "impressions.E007" in errors and "IMPRESSIONS_TASK_BACKEND='flushes'" in errors
