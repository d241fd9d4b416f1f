"""Fixtures of the site's tests: a dead Redis, the impression buffer, captured JSON log lines."""

import io
import json
import logging

import pytest

import devservices
from casusult.jsonlog import JsonFormatter
from impressions.recorder import get_client


@pytest.fixture
def dead_redis_url():
    """A loopback port nothing listens on: connection refused at once."""
    return f"redis://127.0.0.1:{devservices.free_port()}/0"


@pytest.fixture
def buffer():
    """This test session's Redis database for the impression buffer, emptied before and after."""
    client = get_client(1.0)
    client.flushdb()
    yield client
    client.flushdb()


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
