"""Fixtures and helpers shared by the test_impressions_* modules (no tests of its own)."""

import os
import shutil
import tempfile

import pytest
from django.conf import settings
from django.tasks import default_task_backend
from django.test import override_settings

import devservices
from impressions import recorder
from impressions.recorder import get_flush_client

DUMMY_TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}


def flush_redis(client):
    """Empty only the impressions' Redis database (a cluster: every primary of the test cluster)."""
    from redis.cluster import RedisCluster

    if isinstance(client, RedisCluster):
        client.flushdb(target_nodes=RedisCluster.PRIMARIES)
    else:
        client.flushdb()


def ping_or_fail(url):
    import redis

    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except redis.RedisError as error:
        pytest.fail(
            f"Redis at {url} is not reachable ({error}): start it with `make test`"
            " (it starts redis-server) or point REDIS_URL at a running Redis."
        )


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


def reset_loss_counter():
    recorder.lost.requests = recorder.lost.impressions = recorder.lost.unreported = 0


def scheduled_flushes():
    return list(default_task_backend.results)


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


class PrivateRedis:
    def __init__(self, process, url):
        self.process = process
        self.url = url

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def database_url_for_subprocess(connection):
    """A DATABASE_URL pointing a subprocess at the test database this session created."""
    params = connection.settings_dict
    user = params.get("USER") or "postgres"
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    host = params.get("HOST") or "127.0.0.1"
    port = params.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{params['NAME']}"


def subprocess_env(connection, **extra):
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "settings.test",
        "DATABASE_URL": database_url_for_subprocess(connection),
        "REDIS_URL": settings.REDIS_URL,
        **extra,
    }
