"""Fixtures of the RQ tests: the RQ Redis of this run, emptied around each test."""

import pytest
import redis

from settings.base import rq_queues
from tests.queues import tasks as queue_tasks
from tests.queues.rq.support import RQ_BACKEND


@pytest.fixture
def rq_url(settings):
    """The RQ Redis of this test run (RQ_REDIS_URL), emptied before and after each test."""
    url = settings.RQ_REDIS_URL
    connection = redis.Redis.from_url(url)
    try:
        connection.flushdb()
    except redis.ConnectionError as error:
        pytest.fail(f"Redis at {url} is not reachable ({error}); start it with `make services`.")
    queue_tasks.markers_client().delete(queue_tasks.MARKERS)
    options = {"URL": url, "TASK_MODULES": settings.TEST_TASK_MODULES}
    settings.TASKS = {"default": {"BACKEND": RQ_BACKEND, "OPTIONS": options}}
    settings.RQ_QUEUES = rq_queues(settings.TASKS)  # django-rq's dashboard, as in settings
    yield url
    connection.flushdb()
    queue_tasks.markers_client().delete(queue_tasks.MARKERS)
