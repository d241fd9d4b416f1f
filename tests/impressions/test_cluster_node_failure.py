"""A primary of a Redis Cluster with replicas (3 + 3) that dies while the buffer records and flushes:
its replica is promoted, and nothing a flush applied comes back with it."""

import functools
import os
import signal
import threading
import time

import pytest
import redis
from django.db import connection
from django.test import Client, override_settings

import devservices
from casusult.models import Post
from impressions import keys
from impressions.exceptions import RedisUnavailable
from impressions.flush import flush_pending
from impressions.recorder import get_client, record_impressions
from impressions.redis_client import node_of
from impressions.signals import impressions_recorded
from tests import services
from tests.factories import make_posts

from .conftest import buffer_at
from .support import APP_REDIS_TIMEOUT

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.cluster]

for name in ("cluster_to_break", "cluster_to_break_under_load"):
    services.register(
        name,
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
cluster_to_break_under_load = cluster_fixture("cluster_to_break_under_load")


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


def viewers_of_shard(shard, count):
    return [f"u:{n}" for n in range(100_000) if keys.shard_of(f"u:{n}") == shard][:count]


@override_settings(IMPRESSIONS_REDIS_TIMEOUT=APP_REDIS_TIMEOUT)
def test_a_primary_killed_under_load_loses_only_what_it_reports(cluster_to_break_under_load):
    """kill -9 of the primary of a third of the shards while two threads record, the timeline is
    served and a flusher flushes; the node then restarts and rejoins as a replica. Every page is
    served; calls to that node are lost (reported) until its replica is promoted, then the same
    process records there again, without a restart; nothing is counted twice."""
    cluster = cluster_to_break_under_load
    ids = [post.id for post in make_posts(5)]
    tally = {"counted": 0, "lost": 0}
    tally_lock = threading.Lock()

    def add(sender, counted, lost, **_):
        with tally_lock:
            tally["counted"] += counted
            tally["lost"] += lost

    impressions_recorded.connect(add, weak=False)
    stop, statuses, flush_errors = threading.Event(), [], []

    def in_thread(work):
        def run():
            try:
                for n in range(10**9):
                    if stop.is_set():
                        return
                    work(n)
            finally:
                connection.close()

        return threading.Thread(target=run)

    def record(prefix):
        return lambda n: record_impressions(f"{prefix}:{n}", ids)

    def serve(n):
        client = Client(REMOTE_ADDR=f"198.51.100.{n % 200}", HTTP_USER_AGENT=f"agent {n}")
        statuses.append(client.get("/api/timeline/").status_code)

    def flush(n):
        try:
            flush_pending()
        except RedisUnavailable as error:
            flush_errors.append(error)
        time.sleep(0.2)

    threads = [in_thread(work) for work in (record("a"), record("b"), serve, flush)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(2)
        primary, _ = primary_and_replica_of_shard(0)
        port = primary.connection_pool.connection_kwargs["port"]
        process_of(cluster, port).kill()
        killed_at = time.monotonic()
        # A viewer of a shard of that node counts again once its replica is promoted.
        probes = iter(viewers_of_shard(0, 10_000))
        while record_impressions(next(probes), ids).counted != len(ids):
            assert time.monotonic() - killed_at < 15, "no promotion"
            time.sleep(0.02)
        recovered_in = time.monotonic() - killed_at
        cluster.restart_node(port)
        until(lambda: redis.Redis(port=port).execute_command("ROLE")[0] == b"slave", 30, "rejoin")
        time.sleep(2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        impressions_recorded.disconnect(add)
    flush_until_applied()
    assert flush_pending().impressions_applied == 0
    counted, lost = tally["counted"], tally["lost"]
    assert set(statuses) == {200}
    assert recovered_in < 10  # the cluster's node timeout (2 s) and an election
    assert lost > 0  # the node's calls while it was down
    # Nothing counted twice: what the calls acknowledged, and what they reported lost but Redis
    # may have run all the same (a reply that timed out).
    assert stored(ids) <= counted + lost
    # Acknowledged and lost with the primary: only what its replica had not yet received.
    assert stored(ids) >= counted - 2 * len(ids)
