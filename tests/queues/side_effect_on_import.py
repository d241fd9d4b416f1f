"""A module with a side effect on import: a worker must refuse a task path here without importing
it (it lies outside the allowed TASK_MODULES of the tests)."""

import redis
from django.conf import settings
from django.tasks import task

IMPORTED = "queues-test:side-effect-imported"

redis.Redis.from_url(settings.REDIS_URL).incr(IMPORTED)


@task
def harmless():
    """A real Task: only the allow-list stands between a queue message and this module."""
