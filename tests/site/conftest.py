"""Fixtures of the site's tests: a dead Redis, the impression buffer, captured JSON log lines, a
production-like SQS queue."""

import io
import json
import logging
import uuid

import pytest

import devservices
from casusult.jsonlog import JsonFormatter
from impressions.recorder import get_client
from impressions.reloads import reloads
from queues.sqs.setup import setup_queues


@pytest.fixture
def dead_redis_url():
    """A loopback port nothing listens on: connection refused at once."""
    return f"redis://127.0.0.1:{devservices.free_port()}/0"


@pytest.fixture
def buffer():
    """This test session's Redis database for the impression buffer, emptied before and after."""
    client = get_client(1.0)
    client.flushdb()
    reloads.clear()  # the process no longer knows what the emptied Redis de-duplicates
    yield client
    client.flushdb()
    reloads.clear()


@pytest.fixture
def json_lines():
    """Everything logged during the test, through the JSON formatter, as parsed objects."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(old_level)


@pytest.fixture
def production_queue(moto_aws_env, moto_sqs_client):
    """Environment of a production-like SQS queue (made by sqs_setup's defaults) on moto: the
    deploy checks read its redrive policy."""
    name = f"casusult-{uuid.uuid4().hex[:8]}"
    setup_queues(moto_sqs_client, name)
    return {**moto_aws_env, "SQS_QUEUE_NAME": name}
