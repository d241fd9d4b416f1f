"""IMPRESSIONS_TASK_BACKEND and IMPRESSIONS_TASK_QUEUE: the flush and roll-up tasks go where they
say, and a backend without that queue stops start-up with an error naming them (not a traceback
from django.tasks). Each case runs in a fresh interpreter: the tasks are defined once, at import."""

import textwrap

from tests.processes import run_python

SCRIPT = """
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
from django.tasks import task_backends

from impressions import tasks

tasks.enqueue_flush()
(result,) = task_backends["default"].results
print("queue", result.task.queue_name, tasks.rollup_impressions_task.queue_name)
"""


def start(**extra):
    return run_python(f"EXTRA = {extra!r}\n" + textwrap.dedent(SCRIPT), timeout=60)


def test_the_tasks_go_to_the_queue_the_setting_names():
    found = start(IMPRESSIONS_TASK_QUEUE="bulk")
    assert found.returncode == 0, found.stderr
    assert "queue bulk bulk" in found.stdout


def test_a_backend_without_the_queue_stops_start_up_naming_the_settings():
    # The default queue name, "default", is not among the backend's QUEUES.
    found = start()
    assert found.returncode != 0
    last = found.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured:"), last
    assert "IMPRESSIONS_TASK_QUEUE='default'" in last and "its queues: bulk, tasks" in last


def test_an_unknown_backend_alias_is_named_too():
    found = start(IMPRESSIONS_TASK_BACKEND="flushes", IMPRESSIONS_TASK_QUEUE="tasks")
    assert found.returncode != 0
    last = found.stderr.strip().splitlines()[-1]
    assert "IMPRESSIONS_TASK_BACKEND='flushes'" in last and "flushes" in last, last
