"""Tasks the queue tests enqueue; they leave markers in the test Redis (settings.REDIS_URL)."""

import time

import redis
from django.conf import settings
from django.tasks import task

MARKERS = "queues-test:markers"


def markers_client():
    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)


def markers():
    return markers_client().lrange(MARKERS, 0, -1)


@task
def record_marker(name):
    markers_client().rpush(MARKERS, name)
    return name


@task
def sleep_then_mark(seconds, name):
    time.sleep(seconds)
    markers_client().rpush(MARKERS, name)


@task
def fail_always(name):
    markers_client().rpush(MARKERS, f"failed:{name}")
    raise RuntimeError(f"task {name} fails on purpose")


def not_a_task(name):
    """A plain function: the workers must refuse to call it even when a job names it."""
    markers_client().rpush(MARKERS, f"not-a-task:{name}")


@task
def slow_marker(name, seconds):
    """Marks its start, sleeps, marks its end: lets a test signal a worker mid-task."""
    markers_client().rpush(MARKERS, f"start:{name}")
    time.sleep(seconds)
    markers_client().rpush(MARKERS, name)


@task
def sleep_then_return_much(seconds, items):
    """Its code ends after `seconds`; turning its return value into JSON takes a while longer."""
    time.sleep(seconds)
    markers_client().rpush(MARKERS, "returned")
    return list(range(items))
