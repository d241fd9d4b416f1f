"""A full Redis (maxmemory reached, noeviction): recording stops at the limit, and the flush still
drains the buffer, so that recording resumes without an operator."""

import threading
import time

import pytest
import redis
from django.db import connections
from django.test import Client, override_settings

from casusult.models import Post
from impressions import clocks, keys, recorder, schedule
from impressions import flush as flush_module
from impressions.flush import flush_pending
from impressions.recorder import lost, pending_status
from impressions.recorder import record_impressions as record
from tests.factories import make_posts
from tests.queues.rq.support import rq_settings, run_burst

from .support import (
    DUMMY_TASKS,
    killed_in_a_child,
    reset_loss_counter,
    scheduled_flushes,
    viewer_in,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def full_redis(private_redis, monkeypatch):
    """(the buffer on a private Redis, a function that sets its maxmemory to what it uses now
    plus `room` bytes): the Dummy task backend, the loss counter, the refusal clock and the
    enqueue backoff reset."""
    server = redis.Redis.from_url(private_redis.url)
    monkeypatch.setattr(schedule.full_redis, "next_check", 0.0)
    schedule.backoff.succeeded()

    def fill_to(room):
        used = server.info("memory")["used_memory"]
        server.config_set("maxmemory", max(1, used + room))
        return used + room

    with override_settings(
        TASKS=DUMMY_TASKS, IMPRESSIONS_REDIS_URL=private_redis.url, IMPRESSIONS_REDIS_TIMEOUT=5.0
    ):
        reset_loss_counter()
        yield server, fill_to
    server.close()


def used_memory(server):
    return server.info("memory")["used_memory"]


def test_a_full_redis_refuses_a_record_call_whole(full_redis):
    server, fill_to = full_redis
    record("u:warm", [1, 2])  # de-duplication entries of this viewer, pruned by later calls
    fill_to(-1)  # over the limit from here on
    # Refused at its first write that may add memory: nothing of it stays, no count past the limit.
    assert record("u:warm", [3, 4, 5]) == (0, 3, False, 0)
    assert record("u:other", [1]) == (0, 1, False, 0)
    # A reload Redis de-duplicates writes nothing new: still answered.
    assert record("u:warm", [1, 2], now=None).counted == 0
    server.config_set("maxmemory", 0)
    assert pending_status([1, 2, 3, 4, 5]) == ({1: 1, 2: 1, 3: 0, 4: 0, 5: 0}, 0)
    assert lost.impressions == 4


def test_a_host_days_off_loses_its_views_once_on_a_full_redis(full_redis, host_clock):
    # The call refused for its days writes nothing; asked again with Redis's, refused whole.
    server, fill_to = full_redis
    host_clock(3 * 86400)
    record("u:warm", [1, 2])
    clocks.offset.seconds = None  # as in a new process: the days named around its own clock
    recorder.today.forget()
    fill_to(-1)
    lost.unreported = 3
    assert record("u:warm", [3, 4, 5]) == (0, 3, False, 0)
    server.config_set("maxmemory", 0)
    assert pending_status([1, 2, 3, 4, 5]) == ({1: 1, 2: 1, 3: 0, 4: 0, 5: 0}, 0)
    assert (lost.impressions, lost.unreported) == (3, 6)


@override_settings(IMPRESSIONS_DEDUP_WINDOW=0)
def test_the_scheduled_flush_drains_a_full_redis_and_recording_resumes(full_redis):
    server, fill_to = full_redis
    posts = make_posts(2000)
    ids = [post.id for post in posts]
    counted = record("u:warm", ids[:1000]).counted  # the script loaded, the connection made
    limit = fill_to(1_000_000)
    calls = 0
    # 1,000 new (post, day) counters a call (about 70 KB), each in a shard of its own.
    while not lost.impressions:
        calls += 1
        assert calls <= 40, f"{used_memory(server)} bytes used, maxmemory {limit}: never refused"
        part = ids[:1000] if calls % 2 else ids[1000:]
        counted += record(viewer_in(calls % 16, taken=()), part, now=None).counted
    assert used_memory(server) < limit + 200_000  # past the limit by a call at most
    assert calls > 5

    report = flush_pending(window="w1")  # a scheduled flush: its window's token
    assert report.impressions_applied == counted
    assert sum(Post.objects.values_list("impressions", flat=True)) == counted
    assert used_memory(server) < limit
    assert record("u:after", ids[:20]).counted == 20


def flushes_asked_for_now():
    """The flush tasks that refused record calls asked for (schedule.FullRedis): due at once,
    the scheduled window left in place."""
    return [
        result
        for result in scheduled_flushes()
        if result.task.name == "flush_impressions_task"
        and result.kwargs.get("manual")
        and result.task.run_after is None
    ]


def total_stored():
    return sum(Post.objects.values_list("impressions", flat=True))


def buffer_counts(posts=2000, viewers=4):
    """(the ids of `posts` new posts, their impressions by `viewers` viewers of shards of their
    own, pending): about 70 bytes a counter, so that a flush frees far more than what the
    connections' buffers take and give back (tens of KB)."""
    ids = [post.id for post in make_posts(posts)]
    for shard in range(viewers):
        assert record(viewer_in(shard), ids).counted == posts
    return ids, posts * viewers


def test_a_refusal_gets_a_flush_at_once_though_one_is_scheduled(full_redis, settings):
    # The real RQ backend and worker: the window's flush is an hour away in RQ's scheduled
    # registry; the flush a refusal asks for is due now, which a worker runs at once.
    server, fill_to = full_redis
    rq_url = settings.RQ_REDIS_URL
    queue = redis.Redis.from_url(rq_url)
    queue.flushdb()
    try:
        with override_settings(**rq_settings(rq_url), IMPRESSIONS_FLUSH_DELAY=3600):
            ids, counted = buffer_counts()
            assert queue.zcard("rq:scheduled:default") == 1
            fill_to(-1)
            assert record("u:refused", ids[:3]).lost == 3
            run_burst()
            assert total_stored() == counted
            assert record("u:after", ids[:3]).counted == 3  # recording resumes
            # The window's flush stays scheduled, and takes what is recorded meanwhile.
            assert server.exists(keys.guard_key())
            assert queue.zcard("rq:scheduled:default") == 1
            flush_pending(window=None)
            assert total_stored() == counted + 3
            assert lost.impressions == 3
    finally:
        queue.flushdb()


@override_settings(IMPRESSIONS_FLUSH_PARTS=2)
def test_refusals_ask_for_one_flush_at_a_time(full_redis, monkeypatch):
    server, fill_to = full_redis
    ids, counted = buffer_counts()  # the window's flush scheduled, five minutes away
    fill_to(-1)
    for n in range(20):
        # Each call as if from a process of its own: its interval does not hold it back.
        monkeypatch.setattr(schedule.full_redis, "next_check", 0.0)
        assert record(f"u:{n}", ids[:3]).lost == 3
    asked = flushes_asked_for_now()
    assert [result.kwargs["part"] for result in asked] == [0, 1]  # one flush, in its 2 parts
    for result in asked:
        result.task.call(**result.kwargs)
    assert total_stored() == counted
    assert record("u:after", ids[:3]).counted == 3
    # The flush freed memory: a refusal may ask for another one 5 s later, not before.
    assert 0 < server.ttl(keys.flush_soon_key()) <= 5
    fill_to(-1)
    monkeypatch.setattr(schedule.full_redis, "next_check", 0.0)
    assert record("u:again", ids[:3]).lost == 3
    assert len(flushes_asked_for_now()) == 2
    server.delete(keys.flush_soon_key())  # those 5 s are over
    monkeypatch.setattr(schedule.full_redis, "next_check", 0.0)
    assert record("u:again", ids[:3]).lost == 3
    assert len(flushes_asked_for_now()) == 4
    server.config_set("maxmemory", 0)
    flush_pending(window=None)
    assert total_stored() == counted + 3
    assert lost.impressions == 3 * 22


def refuse(monkeypatch, ids, viewer="u:refused"):
    """A record call (refused while Redis is full), as if from a process of its own (its interval
    does not hold it back): it asks for a flush unless the guard is there. Returns it lost."""
    monkeypatch.setattr(schedule.full_redis, "next_check", 0.0)
    return record(viewer, ids[:3]).lost


def flush_asked_while_full(full_redis, monkeypatch):
    """(server, ids, counted, the flush task asked for): the counts of buffer_counts() in Redis,
    made full, and a refusal's flush asked for, the guard's minute scaled down to 1 s."""
    server, fill_to = full_redis
    monkeypatch.setattr(flush_module, "SOON_HOLD", 1)
    ids, counted = buffer_counts()
    fill_to(-1)
    assert refuse(monkeypatch, ids) == 3
    [asked] = flushes_asked_for_now()
    return server, ids, counted, asked


# A flush of 12 batches, 0.2 s each, outlasts the guard's (scaled) time twice.
@override_settings(IMPRESSIONS_FLUSH_BATCH_SIZE=700)
def test_a_running_flush_holds_the_guard_refusals_ask_for_no_second_one(full_redis, monkeypatch):
    server, ids, counted, asked = flush_asked_while_full(full_redis, monkeypatch)
    monkeypatch.setattr(
        flush_module, "checkpoint", lambda name: time.sleep(0.2) if name == "after-batch" else None
    )

    def run():
        try:
            asked.task.call(**asked.kwargs)
        finally:
            connections.close_all()

    running = threading.Thread(target=run)
    started = time.monotonic()
    running.start()
    refused = 3
    while running.is_alive():
        # Refused until the flush drops its snapshots (its last moments free the memory).
        refused += refuse(monkeypatch, ids)
        time.sleep(0.05)
    assert time.monotonic() - started > 2  # twice the guard's time
    assert refused > 30
    assert len(flushes_asked_for_now()) == 1  # before: one more each second it ran
    assert total_stored() == counted
    # Done, and it freed memory: the next refusal may ask again 5 s from now.
    assert 0 < server.ttl(keys.flush_soon_key()) <= 5
    assert lost.impressions == refused


@override_settings(IMPRESSIONS_FLUSH_BATCH_SIZE=700)
def test_a_flush_that_dies_releases_the_guard_within_its_hold(full_redis, monkeypatch):
    server, ids, counted, asked = flush_asked_while_full(full_redis, monkeypatch)
    # Killed after its first batch (SIGKILL): it holds the guard no longer.
    killed_in_a_child(
        flush_module,
        "checkpoint",
        lambda: asked.task.call(**asked.kwargs),
        when=lambda name: name == "after-batch",
    )
    died = time.monotonic()
    assert 0 < server.pttl(keys.flush_soon_key()) <= 1000
    while len(flushes_asked_for_now()) == 1:
        assert time.monotonic() - died < 2, "no refusal asked for a flush again"
        assert refuse(monkeypatch, ids) == 3
        time.sleep(0.05)
    # The flush asked for again applies the rest, from the dead one's marks on: exact.
    again = flushes_asked_for_now()[-1]
    again.task.call(**again.kwargs)
    assert total_stored() == counted


def test_a_refusal_ends_a_full_redis_whose_flush_was_lost(full_redis):
    server, fill_to = full_redis
    ids, counted = buffer_counts()
    # That window's flush is lost (a dead worker, a dropped message) and its guard lapsed: with
    # Redis full, no impression arms a shard again.
    server.delete(keys.guard_key())
    fill_to(-1)
    assert record("u:refused", ids[:3]).lost == 3
    [asked] = flushes_asked_for_now()
    asked.task.call(**asked.kwargs)
    assert total_stored() == counted
    # Recording resumes, and its first impression schedules the next window's flush.
    assert record("u:after", ids[:3]).scheduled
    assert server.exists(keys.guard_key())


def test_a_new_cookie_less_viewer_refused_asks_for_a_flush_too(full_redis):
    server, fill_to = full_redis
    make_posts(3)
    fill_to(-1)
    # Its address's hourly budget of new viewers is a write too: refused before the record call.
    response = Client(REMOTE_ADDR="192.0.2.7").get("/api/timeline/")
    assert response.status_code == 200
    assert lost.impressions == 3
    assert len(flushes_asked_for_now()) == 1
    assert server.exists(keys.flush_soon_key())


def test_a_full_redis_still_takes_the_entries_set_aside(full_redis):
    server, fill_to = full_redis
    posts = make_posts(2)
    ids = [post.id for post in posts]
    record("u:1", ids)
    # Written by something else than the record script: no database takes it (flush.set_aside).
    server.hset(keys.pending_group_keys(0)[-1], "abc:20261118", 3)
    fill_to(-1)
    report = flush_pending(window="w1")
    assert report.counters_set_aside == 1
    assert sum(Post.objects.values_list("impressions", flat=True)) == 2
    assert server.hlen(keys.set_aside_key(0)) == 1


# What Redis 6.2 answers a script it refuses at maxmemory (scripting.c): every error of a script
# comes as ERR "Error running script", which redis-py raises as a plain ResponseError.
REDIS_6_2_REFUSAL = (
    "Error running script (call to f_8e3b0c1a): @user_script:21: @user_script: 21:"
    " -OOM command not allowed when used memory > 'maxmemory'."
)


def test_redis_6_2s_refusal_is_a_full_redis_too(full_redis, monkeypatch, caplog):
    server, _ = full_redis

    def refused_as_by_redis_6_2(*args):
        raise redis.ResponseError(REDIS_6_2_REFUSAL)

    monkeypatch.setattr(recorder, "evalsha", refused_as_by_redis_6_2)
    assert record("u:1", [1, 2]).lost == 2
    # As on Redis 7: a flush is asked for (it frees the memory), the line says what happened.
    assert len(flushes_asked_for_now()) == 1
    assert server.exists(keys.flush_soon_key())
    [line] = [r for r in caplog.records if r.name == "impressions.recorder"]
    assert "Redis is full (maxmemory)" in line.getMessage()


def test_a_redis_full_of_what_no_flush_frees_says_what_to_do(full_redis, caplog):
    """A Redis filled by de-duplication entries, which no flush frees: the flush asked for runs
    and the calls are refused all the same. Before, the loss line said only "nothing counts until
    a flush frees it", while flushes ran and freed nothing; it now says what a flush frees, what
    lapses by itself, and that a full Redis that lasts needs more memory."""
    _, fill_to = full_redis
    post_ids = [post.pk for post in make_posts(3)]
    for viewer in range(20):
        record(f"u:{viewer}", post_ids)
    flush_pending()  # nothing pending: what fills Redis is the viewers' de-duplication entries
    fill_to(-1)
    caplog.set_level("WARNING")
    assert record("u:new", post_ids).lost == 3
    assert flush_pending().impressions_applied == 0  # the flush asked for frees nothing
    # Full again to the byte: the flush's own connections and buffers move used_memory by a few
    # bytes either way (a busy machine's suite run let the next call in).
    fill_to(-1)
    assert record("u:newer", post_ids).lost == 3
    [line] = [r for r in caplog.records if r.name == "impressions.recorder"]
    message = line.getMessage()
    assert "Redis is full (maxmemory)" in message
    assert "de-duplication entries and budgets lapse (IMPRESSIONS_DEDUP_WINDOW" in message
    assert "which no flush frees; if it lasts, give Redis more memory (maxmemory)" in message
    assert Post.objects.filter(impressions=20).count() == 3


def test_a_full_redis_still_takes_the_roll_up_s_schedule(full_redis, monkeypatch):
    # A flush that freed some memory may leave Redis full again; the roll-up it schedules after
    # midnight must not pass its turn then (a SET NX is refused when full).
    from impressions import tasks

    server, fill_to = full_redis
    record("u:1", [1])
    fill_to(-1)
    monkeypatch.setattr(tasks, "rollup_needed", lambda today=None: True)
    assert tasks.schedule_rollup() is True
    assert server.exists(keys.rollup_guard_key())
    assert tasks.schedule_rollup() is False  # once
    names = [result.task.name for result in scheduled_flushes()]
    assert names.count("rollup_impressions_task") == 1
