"""Fixtures of the site's tests: a dead Redis, the impression buffer, captured JSON log lines, a
production-like SQS queue."""

import io
import json
import logging
import uuid

import boto3
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
def production_queue(sqs_endpoint_url):
    """Environment of a production-like SQS queue (made by sqs_setup's defaults) on moto: the
    deploy checks read its redrive policy."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_SQS": sqs_endpoint_url,
    }
    client = boto3.client(
        "sqs",
        endpoint_url=sqs_endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    name = f"casusult-{uuid.uuid4().hex[:8]}"
    setup_queues(client, name)
    return {**env, "SQS_QUEUE_NAME": name}
