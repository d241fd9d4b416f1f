"""A primary of a Redis Cluster with replicas (3 + 3) that dies while the buffer records and flushes:
its replica is promoted, and nothing a flush applied comes back with it."""

import functools
import os
import signal
import time

import pytest
import redis
from django.test import override_settings

import devservices
from casusult.models import Post
from impressions import keys
from impressions.exceptions import RedisUnavailable
from impressions.flush import flush_pending
from impressions.recorder import get_client, record_impressions
from impressions.redis_client import node_of
from tests import services
from tests.factories import make_posts

from .conftest import buffer_at

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.cluster]

services.register(
    "cluster_to_break",
    "a Redis Cluster with replicas",
    functools.partial(devservices.RedisClusterProcess, replicas=1),
)


def cluster_fixture(name):
    @pytest.fixture
    def fixture():
        cluster = services.started(name)
        try:
            with buffer_at(cluster.url):
                yield cluster
        finally:
            for process in cluster.processes:  # a stopped node would not stop
                if process.poll() is None:
                    os.kill(process.pid, signal.SIGCONT)
            cluster.stop()

    return fixture


cluster_to_break = cluster_fixture("cluster_to_break")


def until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def process_of(cluster, port):
    return cluster.processes[cluster.ports.index(port)]


def primary_and_replica_of_shard(shard):
    """(primary, its replica's port) of the node serving `shard`'s keys."""
    node = node_of(get_client(), keys.pending_key(shard))
    primary = redis.Redis(port=node.port)
    return primary, int(primary.execute_command("ROLE")[2][0][1])


def stored(ids):
    return sum(Post.objects.filter(id__in=ids).values_list("impressions", flat=True))


def flush_until_applied(timeout=30):
    """flush_pending() again until it succeeds (the cluster settles after a failover)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return flush_pending()
        except RedisUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@override_settings(IMPRESSIONS_SHARDS=1, IMPRESSIONS_FLUSH_REPLICA_WAIT=0.2)
def test_a_replica_cut_off_from_its_primary_is_waited_for(cluster_to_break):
    """A replica whose replication link dropped (a network blip, its output buffer's limit) is
    still the cluster's replica of that primary, and may be promoted before it catches up: the
    flush waits for it. Before, ROLE listed it no more, the flush applied without it, and once the
    primary died the promoted replica brought the applied counts back: 10 recorded, 20 stored."""
    ids = [post.id for post in make_posts(1)]
    for viewer in range(10):
        assert record_impressions(f"u:{viewer}", ids).counted == 1
    primary, replica_port = primary_and_replica_of_shard(0)
    until(lambda: primary.wait(1, 100) == 1, 10, "the replica's acknowledgement")
    replica = process_of(cluster_to_break, replica_port)
    os.kill(replica.pid, signal.SIGSTOP)  # it cannot reconnect before the primary dies
    primary.execute_command("CLIENT", "KILL", "TYPE", "replica")
    with pytest.raises(RedisUnavailable, match="0 of 1 replicas"):
        flush_pending()
    assert stored(ids) == 0
    primary_process = process_of(
        cluster_to_break, primary.connection_pool.connection_kwargs["port"]
    )
    primary_process.kill()
    primary_process.wait(timeout=10)
    os.kill(replica.pid, signal.SIGCONT)
    promoted = redis.Redis(port=replica_port)
    until(lambda: promoted.execute_command("ROLE")[0] == b"master", 30, "the promotion")
    flush_until_applied()
    assert stored(ids) == 10
    assert flush_pending().impressions_applied == 0
    assert stored(ids) == 10
