"""Fixtures of the SQS tests: a fresh queue with a dead-letter queue on moto, over HTTP."""

import uuid
from types import SimpleNamespace

import boto3
import pytest

from tests.queues import tasks as queue_tasks
from tests.queues.sqs.support import SQS_BACKEND, create_queue_with_dlq


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
def setup_env(sqs_endpoint_url):
    """The environment of an `sqs_setup` subprocess against moto, with no SQS task backend."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_SQS": sqs_endpoint_url,
        "QUEUE_BACKEND": "dummy",
    }
