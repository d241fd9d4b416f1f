"""Fixtures of the queue tests shared by both backends' folders and the end-to-end test."""

import uuid
from types import SimpleNamespace

import boto3
import pytest
import redis
from django.tasks.signals import task_finished, task_started

import devservices
from tests.queues import tasks as queue_tasks
from tests.queues.rq.support import rq_on
from tests.queues.sqs.support import SQS_BACKEND, create_queue_with_dlq


@pytest.fixture
def aws_env(monkeypatch, moto_aws_env):
    """Fake credentials and the moto endpoint, through boto3's standard variables."""
    env = {**moto_aws_env, "AWS_SESSION_TOKEN": "testing"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def dead_rq_url():
    """A Redis URL on a loopback port nothing listens on: connection refused at once."""
    return f"redis://127.0.0.1:{devservices.free_port()}/0"


@pytest.fixture
def rq_url(settings):
    """The RQ Redis of this test run (RQ_REDIS_URL), emptied before and after each test."""
    url = settings.RQ_REDIS_URL
    try:
        redis.Redis.from_url(url).ping()
    except redis.ConnectionError as error:
        pytest.fail(f"Redis at {url} is not reachable ({error}); start it with `make services`.")
    with rq_on(url, settings):
        yield url


@pytest.fixture
def sqs(aws_env, settings):
    """A fresh queue (visibility 1 s) with a DLQ after 2 receives, as TASKS['default']."""
    client = boto3.client("sqs")
    name = f"casusult-{uuid.uuid4().hex[:10]}"
    url, dlq_url = create_queue_with_dlq(client, name)
    settings.TASKS = {
        "default": {
            "BACKEND": SQS_BACKEND,
            "OPTIONS": {
                "QUEUE_URL": url,
                "WAIT_TIME_SECONDS": 1,
                "VISIBILITY_TIMEOUT": 2,
                "TASK_MODULES": settings.TEST_TASK_MODULES,
            },
        }
    }
    queue_tasks.markers_client().delete(queue_tasks.MARKERS)
    yield SimpleNamespace(client=client, url=url, dlq_url=dlq_url, name=name, env=aws_env)
    queue_tasks.markers_client().delete(queue_tasks.MARKERS)


@pytest.fixture
def setup_env(moto_aws_env):
    """The environment of an `sqs_setup` subprocess against moto, with no SQS task backend."""
    return {**moto_aws_env, "QUEUE_BACKEND": "dummy"}


@pytest.fixture
def task_signals():
    """The (result id, status, TaskResult) of each task_started and task_finished sent during the
    test, in order."""
    seen = []

    def remember(sender, task_result, **kwargs):
        seen.append((task_result.id, task_result.status, task_result))

    task_started.connect(remember)
    task_finished.connect(remember)
    yield seen
    task_started.disconnect(remember)
    task_finished.disconnect(remember)
