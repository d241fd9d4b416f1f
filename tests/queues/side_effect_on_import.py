"""A module with a side effect on import: a worker must refuse a task path here without importing
it (it lies outside the tests' TASK_MODULES). Never import it from a test."""

from django.tasks import task

from tests.queues.tasks import SIDE_EFFECT_KEY, markers_client

markers_client().incr(SIDE_EFFECT_KEY)


@task
def harmless():
    """A real Task: only the allow-list stands between a queue message and this module."""
