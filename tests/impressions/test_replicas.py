"""The flush waits for the replicas to have its snapshots before it applies them (WAIT)."""

import contextlib
import functools
import logging
import os
import shutil
import signal
import tempfile
import time
from unittest import mock

import pytest
import redis
from django.test import override_settings

import devservices
from casusult.models import Post
from impressions import flush as flush_module
from impressions import keys
from impressions.conf import conf
from impressions.exceptions import RedisUnavailable
from impressions.flush import flush_pending
from impressions.models import Flush
from impressions.recorder import record_impressions as record
from impressions.reloads import reloads
from tests import services
from tests.factories import make_posts

from .conftest import buffer_at
from .support import DUMMY_TASKS, reset_loss_counter

pytestmark = pytest.mark.django_db(transaction=True)

VIEWERS = 20


class Pair:
    """A primary and its replica, redis-servers of our own."""

    def __init__(self, *primary_extra):
        self.workdir = tempfile.mkdtemp(prefix="impressions-replica-")
        self.primary_port, self.replica_port = devservices.free_port(), devservices.free_port()
        self.primary = devservices.start_redis_server(
            self.primary_port, self.workdir, "--repl-diskless-sync-delay", "0", *primary_extra
        )
        self.replica = self.start_replica("--replicaof", "127.0.0.1", str(self.primary_port))
        self.url = f"redis://127.0.0.1:{self.primary_port}/0"
        self.replica_url = f"redis://127.0.0.1:{self.replica_port}/0"
        try:
            # The replica is online and has acknowledged (within a second of its sync: a WAIT
            # before then finds none).
            self.acknowledged()
        except BaseException:
            self.stop()
            raise

    def start_replica(self, *extra):
        """The replica's server; it loads what it last saved (SAVE), if anything."""
        return devservices.start_redis_server(self.replica_port, f"{self.workdir}/replica", *extra)

    def acknowledged(self):
        """Return once the replica has acknowledged every write made on the primary so far."""
        replicas_acknowledged(
            redis.Redis(port=self.primary_port), [redis.Redis(port=self.primary_port)]
        )

    def stop(self):
        for process in (self.primary, self.replica):
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                process.kill()
                process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def until(condition, timeout=5):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def pair(request):
    pair = Pair(*getattr(request, "param", ()))
    # As buffer_at, on servers of their own: nothing to empty (the primary may be gone by the end).
    reloads.clear()
    reset_loss_counter()
    try:
        with override_settings(TASKS=DUMMY_TASKS, IMPRESSIONS_REDIS_URL=pair.url):
            yield pair
    finally:
        pair.stop()


def view(posts, prefix):
    for viewer in range(VIEWERS):
        record(f"{prefix}:{viewer}", [p.id for p in posts])


def totals(posts):
    return sorted(Post.objects.filter(id__in=[p.id for p in posts]).values_list("impressions"))


def test_a_replica_that_acknowledges_changes_nothing(pair):
    posts = make_posts(5)
    view(posts, "a")
    with mock.patch.object(
        flush_module, "wait_for_replicas", wraps=flush_module.wait_for_replicas
    ) as waited:
        report = flush_pending()
    assert [node.replicas for node in waited.call_args.args[0]] == [1]
    assert report.impressions_applied == 5 * VIEWERS
    assert totals(posts) == [(VIEWERS,)] * 5


@override_settings(IMPRESSIONS_FLUSH_REPLICA_WAIT=0.2)
def test_a_replica_behind_stops_the_flush_before_it_applies(pair):
    posts = make_posts(5)
    view(posts, "a")
    os.kill(pair.replica.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(RedisUnavailable, match="0 of 1 replicas"):
            flush_pending()
        assert time.monotonic() - started < 1
    finally:
        os.kill(pair.replica.pid, signal.SIGCONT)
    stopped = Flush.objects.get()
    assert stopped.outcome == Flush.Outcome.FAILED
    assert totals(posts) == [(0,)] * 5
    view(posts, "b")
    report = flush_pending()
    assert report.recovered == [stopped.id]
    assert report.impressions_applied == 2 * 5 * VIEWERS
    assert totals(posts) == [(2 * VIEWERS,)] * 5
    assert flush_pending().impressions_applied == 0


@override_settings(IMPRESSIONS_FLUSH_REPLICA_WAIT=0.2)
def test_a_failover_to_a_replica_that_missed_the_snapshot_counts_once(pair):
    posts = make_posts(5)
    view(posts, "a")
    pair.acknowledged()
    # The replica saves what it has, stops before the snapshot reaches it, and dies.
    redis.Redis(port=pair.replica_port).save()
    os.kill(pair.replica.pid, signal.SIGSTOP)
    with contextlib.suppress(RedisUnavailable):
        flush_pending()
    pair.replica.kill()
    pair.replica.wait(timeout=10)
    pair.primary.kill()
    pair.primary.wait(timeout=10)
    # Promoted: started again from what it had received, a primary now; the buffer moves to it.
    pair.replica = pair.start_replica()
    with override_settings(IMPRESSIONS_REDIS_URL=pair.replica_url):
        flush_pending()
    assert totals(posts) == [(VIEWERS,)] * 5


@pytest.mark.parametrize("pair", [("--rename-command", "WAIT", "")], indirect=True)
def test_a_server_that_refuses_wait_flushes_as_before(pair, caplog):
    posts = make_posts(5)
    view(posts, "a")
    flush_module._refused.clear()
    with caplog.at_level(logging.WARNING, logger="impressions.flush"):
        flush_pending()
        view(posts, "b")
        flush_pending()
    assert totals(posts) == [(2 * VIEWERS,)] * 5
    assert [r.getMessage().count("refuses WAIT") for r in caplog.records] == [1]


services.register(
    "cluster_with_replicas",
    "a Redis Cluster with replicas",
    functools.partial(devservices.RedisClusterProcess, replicas=1),
)


@pytest.fixture(scope="module")
def cluster_with_replicas():
    """A Redis Cluster of 3 primaries with a replica each (tests/services.py starts it early)."""
    cluster = services.started("cluster_with_replicas")
    yield cluster
    cluster.stop()


def replicas_acknowledged(client, primaries):
    """Return once the replicas of `primaries` have acknowledged a write to each shard (a WAIT
    finds a replica only after its first acknowledgement, up to a second after its sync); read
    from INFO (a server may refuse WAIT). A replica acknowledges once a second by itself; a WAIT
    asks it to at once (REPLCONF GETACK), so each turn of the poll sends one, where allowed."""
    for shard in range(conf.SHARDS):
        client.set(f"{keys.tag(shard)}:test-sync", 1)
    for primary in primaries:
        target = primary.info("replication")["master_repl_offset"]
        until(lambda p=primary, t=target: acknowledged_offset(p) >= t)


def acknowledged_offset(primary):
    """The offset its replica last acknowledged to `primary` (-1: none), after a WAIT of 50 ms
    at most asked it for a new acknowledgement (not on a server that refuses WAIT)."""
    with contextlib.suppress(redis.ResponseError):
        primary.wait(1, 50)
    return primary.info("replication").get("slave0", {}).get("offset", -1)


@override_settings(IMPRESSIONS_FLUSH_REPLICA_WAIT=0.2)
def test_on_a_cluster_each_node_waits_for_its_replicas(cluster_with_replicas):
    posts = make_posts(5)
    with buffer_at(cluster_with_replicas.url) as client:
        replicas_acknowledged(
            client, [client.get_redis_connection(node) for node in client.get_primaries()]
        )
        view(posts, "a")
        waited = mock.patch.object(
            flush_module, "wait_for_replicas", wraps=flush_module.wait_for_replicas
        )
        with waited as wait_for_replicas:
            flush_pending()
        nodes = wait_for_replicas.call_args.args[0]
        assert sorted(node.replicas for node in nodes) == [1, 1, 1]
        assert totals(posts) == [(VIEWERS,)] * 5
        # The replica of the node of shard 1 stops: that node's WAIT times out.
        primary = client.get_node_from_key(keys.pending_key(1))
        replica = redis.Redis(host=primary.host, port=primary.port).execute_command("ROLE")[2][0]
        process = cluster_with_replicas.processes[
            cluster_with_replicas.ports.index(int(replica[1]))
        ]
        view(posts, "b")
        os.kill(process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(RedisUnavailable, match=f"0 of 1 replicas of [^ ]*:{primary.port} "):
                flush_pending()
        finally:
            os.kill(process.pid, signal.SIGCONT)
        assert totals(posts) == [(VIEWERS,)] * 5
        flush_pending()
        assert totals(posts) == [(2 * VIEWERS,)] * 5
