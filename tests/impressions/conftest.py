"""Fixtures of the impressions tests: the buffer on standalone Redis and on the Cluster, a private Redis."""

import shutil
import tempfile

import pytest
from django.conf import settings
from django.test import override_settings

import devservices
from impressions.redis_client import get_flush_client

from .support import DUMMY_TASKS, PrivateRedis, flush_redis, ping_or_fail, reset_loss_counter


@pytest.fixture
def standalone_buffer():
    """The standalone Redis of REDIS_URL, emptied before and after the test; Dummy task backend."""
    ping_or_fail(settings.REDIS_URL)
    with override_settings(TASKS=DUMMY_TASKS, IMPRESSIONS_REDIS_CLUSTER="auto"):
        client = get_flush_client()
        flush_redis(client)
        reset_loss_counter()
        yield client
        flush_redis(get_flush_client())


@pytest.fixture
def cluster_buffer(redis_cluster_url):
    """The real 3-node Redis Cluster, detected automatically (INFO cluster)."""
    with override_settings(
        TASKS=DUMMY_TASKS, REDIS_URL=redis_cluster_url, IMPRESSIONS_REDIS_CLUSTER="auto"
    ):
        client = get_flush_client()
        flush_redis(client)
        reset_loss_counter()
        yield client
        flush_redis(get_flush_client())


@pytest.fixture(params=["standalone", "cluster"])
def buffer(request):
    """Run the test once on standalone Redis and once on the Redis Cluster."""
    return request.getfixturevalue(f"{request.param}_buffer")


@pytest.fixture
def private_redis():
    """A redis-server of our own on a free port, so a test may kill it."""
    workdir = tempfile.mkdtemp(prefix="impressions-redis-")
    port = devservices.free_port()
    try:
        process = devservices.start_redis_server(port, workdir)
    except devservices.ServiceUnavailable as error:
        pytest.fail(f"cannot start a private redis-server: {error}")
    server = PrivateRedis(process, f"redis://127.0.0.1:{port}/0")
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)
