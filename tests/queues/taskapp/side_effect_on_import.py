"""A module with a side effect on import, inside an installed app's package but no tasks module:
a worker must refuse a task path here without importing it. Never import it from a test."""

from django.tasks import task

from tests.queues.tasks import SIDE_EFFECT_KEY, markers_client

markers_client().incr(SIDE_EFFECT_KEY)


@task
def harmless():
    """A real Task: only the allow-list stands between a queue message and this module."""
