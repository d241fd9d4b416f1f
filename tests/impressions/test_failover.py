"""A failover of the buffer's standalone Redis behind a stable endpoint (ElastiCache's primary
endpoint, a DNS name, a proxy): the old primary, now a replica, keeps the pooled connections and
answers every write READONLY; the web processes must count again, in the new primary."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.test import override_settings
from redis.exceptions import ReadOnlyError
from rq import Queue
from rq.registry import ScheduledJobRegistry

import redis_endpoints
from casusult.models import Post
from impressions import flush as flush_module
from impressions import keys, recorder, scripts
from impressions.conf import conf
from impressions.flush import flush_pending
from impressions.recorder import pending_counts
from impressions.recorder import record_impressions as record
from impressions.reloads import reloads
from impressions.schedule import flush_due
from impressions.signals import flush_finished
from queues.rq import jobs
from tests.factories import make_posts
from tests.failover import FailoverPair
from tests.queues.rq.support import rq_settings

from .support import reset_loss_counter

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def failover():
    """The buffer (database 0) and the RQ backend (database 1) on a FailoverPair's endpoint."""
    pair = FailoverPair()
    reloads.clear()
    reset_loss_counter()
    rq_url = pair.url.removesuffix("/0") + "/1"
    try:
        # The endpoint forwards in this process's threads: on a busy machine a new connection
        # through it can outlast the request path's 50 ms, and lose a call for another reason;
        # and the replica (the old primary) may acknowledge a flush's snapshots after 500 ms.
        timeout = {"IMPRESSIONS_REDIS_TIMEOUT": 2, "IMPRESSIONS_FLUSH_REPLICA_WAIT": 5}
        with override_settings(IMPRESSIONS_REDIS_URL=pair.url, **timeout, **rq_settings(rq_url)):
            yield pair
    finally:
        pair.stop()


def within(condition, seconds=10):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_after_a_failover_recording_counts_in_the_new_primary(failover, client):
    posts = make_posts(3)
    ids = [post.id for post in posts]
    before = record("before", ids)  # it schedules the flush: an RQ connection to the old primary
    # Another thread (a server's other worker thread) keeps a connection of its own.
    other_thread = ThreadPoolExecutor(max_workers=1)
    other_before = other_thread.submit(record, "other-before", ids).result()
    assert (before.counted, before.scheduled, other_before.counted) == (3, True, 3)
    assert flush_due() is not None  # the flush's client, with a connection to the old primary

    failover.fail_over()

    after = [record(f"after-{n}", ids) for n in range(3)]
    other_after = other_thread.submit(record, "other-after", ids).result()
    other_thread.shutdown()
    assert [result.counted for result in after] == [3, 3, 3], after
    assert other_after.counted == 3, other_after
    assert client.get("/").status_code == 200  # it counts each post once more
    # Counted in the new primary, with what it had from before the failover.
    assert pending_counts(ids) == dict.fromkeys(ids, 7)
    new_primary = failover.primary_on(0)
    totals = [new_primary.hget(keys.totals_key(shard), "pending") for shard in range(conf.SHARDS)]
    assert sum(int(total or 0) for total in totals) == 3 * 7

    report = flush_pending()
    assert report.impressions_applied == 3 * 7
    assert set(Post.objects.filter(id__in=ids).values_list("impressions", flat=True)) == {7}

    # The next impression schedules the next flush, on the new primary's RQ queue.
    assert record("after-the-flush", ids).scheduled
    queue = Queue("default", connection=failover.primary_on(1), serializer=jobs.SERIALIZER)
    assert ScheduledJobRegistry(queue=queue).count == 2  # the one before the failover, this one
    assert recorder.lost.impressions == 0


def test_while_the_endpoint_still_leads_to_the_demoted_primary_calls_are_refused_at_once(
    failover, monkeypatch
):
    # A DNS name moves some seconds after the failover: until then a new connection reaches the
    # old primary again. Each refused call reconnected twice (its own, its retry's), 2 connections
    # and about 2 ms a call instead of 0.2 (a TLS handshake each, on ElastiCache), for every call
    # of every thread of every process: a connection storm on the demoted primary.
    ids = [post.id for post in make_posts(3)]
    assert record("before", ids).counted == 3
    # A connection refused again so soon after reconnecting waits this long before the next.
    monkeypatch.setattr(redis_endpoints, "DEMOTED_RECONNECT_SPACING", 3600)
    failover.fail_over(move_endpoint=False)
    demoted = failover.replica
    connections = demoted.info("stats")["total_connections_received"]

    during = [record(f"during-{n}", ids) for n in range(10)]

    assert [result.lost for result in during] == [3] * 10
    # The first refused call's retry reconnected (to the demoted primary still), and a script
    # load may have taken a pooled one (it had been closed); no other call (before: 19).
    assert demoted.info("stats")["total_connections_received"] - connections <= 2
    failover.move_endpoint()
    monkeypatch.setattr(redis_endpoints, "DEMOTED_RECONNECT_SPACING", 0)
    assert record("after", ids).counted == 3
    assert pending_counts(ids) == dict.fromkeys(ids, 2)


def test_a_read_only_replica_refuses_the_record_script_before_any_write(failover):
    # Why a record call the demoted primary refused may be sent again: it wrote nothing there
    # (a script without flags runs on a replica until its first write, which is refused).
    replica = failover.replica
    failover.primary.set("before", 1)
    within(lambda: replica.exists("before"))
    written = {key: replica.dump(key) for key in replica.keys("*")}
    script_keys, args = recorder.record_call(0, "viewer", [1, 2], "", "20261207", unreported=5)
    with pytest.raises(ReadOnlyError):
        replica.eval(scripts.RECORD, len(script_keys), *script_keys, *args)
    assert {key: replica.dump(key) for key in replica.keys("*")} == written


def test_a_failover_during_the_flush_applies_each_impression_once(failover, monkeypatch):
    # The primary is demoted after the flush's first batch is in the database: the flush reads
    # the rest from the old primary (a replica now), applies it, and is refused when it drops its
    # snapshots; run again at once, it finds them on the new primary, applied whole (the ledger).
    posts = make_posts(6)
    ids = [post.id for post in posts]
    for n in range(3):
        assert record(f"viewer-{n}", ids).counted == 6
    failed_over = []

    def fail_over_after_the_first_batch(name):
        if name == "after-batch" and not failed_over:
            failed_over.append(name)
            failover.fail_over()
            # The old primary follows the new one before the flush runs again (that one waits
            # for its snapshots to reach the replicas, else stops: they stay for the next flush).
            offset = failover.primary.info("replication")["master_repl_offset"]
            within(lambda: failover.in_sync(offset))

    finished = []

    def remember(sender, report, error, **kwargs):
        finished.append((report.impressions_applied, error is None))

    monkeypatch.setattr(flush_module, "checkpoint", fail_over_after_the_first_batch)
    flush_finished.connect(remember)
    try:
        report = flush_pending(batch_size=2)
    finally:
        flush_finished.disconnect(remember)

    assert failed_over
    assert set(Post.objects.filter(id__in=ids).values_list("impressions", flat=True)) == {3}
    assert pending_counts(ids) == dict.fromkeys(ids, 0)
    assert report.impressions_applied == 0 and len(report.recovered) == 1, report
    # The refused attempt committed every batch: its report counts them (metrics), the run
    # again none (before, both said 0, and the 18 impressions were never counted).
    assert finished == [(18, False), (0, True)]
    assert flush_pending().impressions_applied == 0
    assert set(Post.objects.filter(id__in=ids).values_list("impressions", flat=True)) == {3}
