"""Fixtures of the site's tests: a dead Redis, the impression buffer, posts with impressions,
captured JSON log lines, a production-like SQS queue."""

import io
import json
import logging
import os
import subprocess
import sys
import time
import uuid

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection
from rq import Worker

import devservices
from casusult.jsonlog import JsonFormatter
from impressions.flush import flush_pending
from impressions.recorder import get_client, record_impressions
from impressions.reloads import reloads
from queues.sqs.setup import setup_queues
from tests.factories import make_posts
from tests.impressions.support import database_url_for_subprocess
from tests.processes import PROJECT_DIR
from tests.queues.rq.support import rq_settings


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
def site_data(buffer):
    """Two posts with flushed impressions (a ledger row, today's history), one more pending."""
    posts = make_posts(2)
    record_impressions("u:1", [post.pk for post in posts])
    flush_pending()
    record_impressions("u:2", [posts[0].pk])
    return posts


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


@pytest.fixture(scope="module")
def rq_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """`runworker` on RQ_REDIS_URL and the test database, for a whole module, as `make run` runs
    it beside the web server; yields the RQ Redis URL. The RQ database is emptied around it."""
    url = django_settings.RQ_REDIS_URL
    rq_redis = redis.Redis.from_url(url)
    rq_redis.flushdb()
    with django_db_blocker.unblock():
        database_url = database_url_for_subprocess(connection)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "settings.test",
        "DATABASE_URL": database_url,
        "REDIS_URL": django_settings.IMPRESSIONS_REDIS_URL,
        "QUEUE_BACKEND": "rq",
        "RQ_REDIS_URL": url,
    }
    log_path = tmp_path_factory.mktemp("rq-worker") / "worker.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runworker"],
            cwd=PROJECT_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not Worker.all(connection=rq_redis):
            assert process.poll() is None, f"runworker exited: {log_path.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"no worker registered: {log_path.read_text()}"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)
        rq_redis.flushdb()


@pytest.fixture
def rq_site(rq_worker, settings, buffer):
    """The site on the RQ backend of the module's worker, with an empty impression buffer."""
    for name, value in rq_settings(rq_worker).items():
        setattr(settings, name, value)
    return rq_worker
