"""manage.py queue_stats on Django's backends without a queue: no server to read."""

import io

from django.core.management import call_command

IN_PROCESS_TASKS = {
    "inline": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"},
    "stored": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"},
}


def test_queue_stats_says_what_each_backend_without_a_queue_does_with_tasks(settings):
    settings.TASKS = IN_PROCESS_TASKS
    out = io.StringIO()

    call_command("queue_stats", stdout=out)

    # The dummy backend never runs what it stores: only flush_impressions would flush.
    assert out.getvalue().splitlines() == [
        "TASKS['inline'] ImmediateBackend",
        "  runs tasks in-process: no queue",
        "TASKS['stored'] DummyBackend",
        "  stores tasks and never runs them: no queue",
    ]
