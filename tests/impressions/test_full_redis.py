"""A full Redis (maxmemory reached, noeviction): recording stops at the limit, and the flush still
drains the buffer, so that recording resumes without an operator."""

import pytest
import redis
from django.test import override_settings

from casusult.models import Post
from impressions import keys, recorder, schedule
from impressions.flush import flush_pending
from impressions.recorder import lost, pending_status
from impressions.recorder import record_impressions as record
from tests.factories import make_posts

from .support import DUMMY_TASKS, reset_loss_counter, scheduled_flushes, viewer_in

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def full_redis(private_redis, monkeypatch):
    """(the buffer on a private Redis, a function that sets its maxmemory to what it uses now
    plus `room` bytes): the Dummy task backend, the loss counter and the refusal clock reset."""
    server = redis.Redis.from_url(private_redis.url)
    monkeypatch.setattr(schedule.full_redis, "next_check", 0.0)

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


def test_a_refusal_schedules_a_flush_when_none_is(full_redis):
    server, fill_to = full_redis
    posts = make_posts(3)
    ids = [post.id for post in posts]
    assert record("u:1", ids).scheduled
    assert len(scheduled_flushes()) == 1
    # That window's flush is lost (a dead worker, a dropped message) and its guard lapsed: with
    # Redis full, no impression arms a shard again.
    server.delete(keys.guard_key())
    fill_to(-1)
    assert record("u:2", ids).lost == 3
    assert len(scheduled_flushes()) == 2
    assert server.exists(keys.guard_key())
    # Refused again within the interval: no second round trip, nothing scheduled twice.
    server.delete(keys.guard_key())
    assert record("u:3", ids).lost == 3
    assert len(scheduled_flushes()) == 2
    flush_pending(window="w1")
    assert sum(Post.objects.values_list("impressions", flat=True)) == 3


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
    # As on Redis 7: a flush is scheduled (it frees the memory), the line says what happened.
    assert len(scheduled_flushes()) == 1
    assert server.exists(keys.guard_key())
    [line] = [r for r in caplog.records if r.name == "impressions.recorder"]
    assert "Redis is full (maxmemory)" in line.getMessage()


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
