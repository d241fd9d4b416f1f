"""Neighbours on one Redis: two projects (or a staging and a production site) on one database,
kept apart by IMPRESSIONS_KEY_PREFIX alone (ElastiCache Serverless has database 0 only). Whatever
the two prefixes' shapes, one's commands touch none of the other's keys.

The dangerous shapes are those whose tags meet: `{imp:3}` is shard 3 of "imp" and the tag of
"imp:3"'s schedule guard, salt, windows; `{imp:ip:0}` is shard 0 of "imp:ip" and has the form of
an address's tag of "imp" (keys.own_keys)."""

import inspect
import logging

import pytest
from django.core.management import call_command
from django.tasks import default_task_backend
from django.test import override_settings

import impressions
from casusult.models import Post
from impressions import budgets, flush, keys, salt, tasks
from impressions.recorder import record_impressions
from impressions.redis_client import get_flush_client
from impressions.testing import empty_buffer
from tests.factories import make_posts

from .support import scan_all
from .test_buffer_totals import Crash, crash_at

# Prefixes that are prefixes of one another, look like a shard or an address suffix, hold glob
# or regex characters.
PREFIXES = [
    *("imp", "imp:3", "imp:", "imp-2", "imp:ip", "imp:ip:0123abcd", "a", "a:b"),
    *("x", "x:pending", "i*p", "[i]mp", "a\\b", "imp.3"),
]
# What each parameter of a keys function is given.
ARGUMENTS = {
    "shard": 3,
    "viewer_key": "u:1",
    "hour": 493000,
    "flush_id": "20261207T100000-0123abcd",
    "window": "0123abcd0123abcd@1796641509.955",
    "ip_digest": "0123abcd" * 3,
    "day": "20261207",
    "with_guard": True,
}

# The functions of impressions.keys that make no key: a tag, a day, a shard number, a mark.
NO_KEY = {"tag", "day_text", "parse_day", "shard_of", "is_own_flush_id", "window_mark"}


def every_key():
    """A key (or key prefix) of each function of impressions.keys that names one."""
    made = []
    for name, function in inspect.getmembers(keys, inspect.isfunction):
        if function.__module__ != keys.__name__ or name.startswith("_"):
            continue
        parameters = inspect.signature(function).parameters
        if not set(parameters) <= set(ARGUMENTS) or name in NO_KEY:
            continue
        made.append(function(**{parameter: ARGUMENTS[parameter] for parameter in parameters}))
    flat = [key for item in made for key in (item if isinstance(item, list) else [item])]
    # snapshot_hashes: (key, group) pairs; holding_keys: a tuple of keys as bytes.
    flat = [
        key
        for item in flat
        for key in (
            [k.decode() for k in item]
            if isinstance(item, tuple) and all(isinstance(k, bytes) for k in item)
            else [item]
        )
    ]
    return [key[0] if isinstance(key, tuple) else key for key in flat]


def test_every_key_is_its_prefix_s_and_no_other_prefix_s():
    for prefix in PREFIXES:
        with override_settings(IMPRESSIONS_KEY_PREFIX=prefix):
            made = every_key()
        assert len(made) > 40, made  # the record call's, the snapshots', the guards', the salt…
        for other in PREFIXES:
            matches = [key for key in made if keys.own_keys(other).match(key.encode())]
            assert matches == (made if other == prefix else []), (prefix, other)


# (the prefix whose buffer is emptied, its neighbour's), both ways round for each shape.
PAIRS = [("imp:3", "imp"), ("imp", "imp:3"), ("imp", "imp:ip"), ("imp", "imp:ip:0123abcd")]


@pytest.mark.django_db
@pytest.mark.parametrize(("emptied", "neighbour"), PAIRS)
@override_settings(IMPRESSIONS_REDIS_TIMEOUT=10.0, IMPRESSIONS_IP_NEW_VIEWERS_PER_HOUR=100)
def test_empty_buffer_leaves_every_key_of_a_neighbour_s_prefix(buffer, emptied, neighbour):
    """Before, "imp:3"'s empty_buffer() deleted shard 3 of "imp" (its pending counts, snapshots
    and viewers seen), and "imp"'s deleted "imp:3"'s schedule guard, salt and windows, and the
    whole buffer of "imp:ip"."""
    ids = [post.id for post in make_posts(40)]
    client = get_flush_client()  # the settings above closed the fixture's
    salt.forget()  # the salt this process kept of an earlier test's buffer
    pending = {neighbour: fill(neighbour, ids)[0]}
    neighbour_s = sorted(scan_all(client))
    assert any(":ip:" in key for key in neighbour_s) and any(":salt:" in key for key in neighbour_s)
    fill(emptied, ids)

    with override_settings(IMPRESSIONS_KEY_PREFIX=emptied):
        empty_buffer()
        assert impressions.buffer_status() == (0, 0, 0, 0, False, 0)

    with override_settings(IMPRESSIONS_KEY_PREFIX=neighbour):
        assert impressions.buffer_status() == pending[neighbour]
    assert sorted(scan_all(get_flush_client())) == neighbour_s


@pytest.mark.django_db
@pytest.mark.parametrize(("old", "new"), PAIRS)
@override_settings(IMPRESSIONS_REDIS_TIMEOUT=10.0, IMPRESSIONS_IP_NEW_VIEWERS_PER_HOUR=100)
def test_flush_impressions_key_prefix_takes_the_old_prefix_s_counts_only(buffer, old, new):
    """After a change of IMPRESSIONS_KEY_PREFIX from `old` to `new`, the command flushes the
    counts left under `old`, exactly, and leaves `new`'s pending, its snapshots and its
    schedule as they are: also when one's tags are the other's (`imp` and `imp:3`)."""
    ids = [post.id for post in make_posts(40)]
    salt.forget()
    _, left = fill(old, ids)
    status, _ = fill(new, ids)
    with override_settings(IMPRESSIONS_KEY_PREFIX=new):
        call_command("flush_impressions", key_prefix=old, verbosity=0)
        assert impressions.buffer_status() == status
    with override_settings(IMPRESSIONS_KEY_PREFIX=old):
        assert impressions.buffer_status()[:2] == (0, 0)
        assert not impressions.buffer_status().in_snapshots
    assert sum(Post.objects.values_list("impressions", flat=True)) == left


def fill(prefix, ids):
    """A buffer under `prefix`: counts pending, a crashed flush's snapshots, the schedule
    guard, the salt and an address's budget. Returns its status and the impressions counted."""
    with override_settings(IMPRESSIONS_KEY_PREFIX=prefix):
        counted = sum(
            record_impressions(f"u:{viewer}", ids[viewer : viewer + 3]).counted
            for viewer in range(40)  # every shard, the schedule guard
        )
        flush.checkpoint, before = crash_at("after-snapshot"), flush.checkpoint
        try:
            with pytest.raises(Crash):
                flush.flush_pending()  # snapshots left for the next flush
        finally:
            flush.checkpoint = before
        counted += record_impressions("u:1", ids[10:20]).counted
        budgets.grant_new_viewer("192.0.2.1", salt.utc_day(), "d" * 32, False)  # salt, ip
        status = impressions.buffer_status()
    assert status.flush_scheduled and status.in_snapshots and status.pending_impressions
    return status, counted


@pytest.mark.django_db
@override_settings(IMPRESSIONS_REDIS_TIMEOUT=10.0)
def test_a_flush_another_prefix_scheduled_is_logged_by_the_worker_that_runs_it(buffer, caplog):
    """Two projects on one task queue: a worker runs any flush task it receives, with its own
    settings. One of "imp"'s flushes run by "imp:3"'s worker flushes "imp:3"'s buffer, and
    "imp"'s counts wait with its guard (for its next impression after the guard lapses), which
    nothing said before."""
    [post] = make_posts(1)
    with override_settings(IMPRESSIONS_KEY_PREFIX="imp"):
        record_impressions("u:1", [post.id])
        [scheduled] = default_task_backend.results
        status = impressions.buffer_status()
    with override_settings(IMPRESSIONS_KEY_PREFIX="imp:3"):
        tasks.flush_impressions_task.call(*scheduled.args, **scheduled.kwargs)
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "another IMPRESSIONS_KEY_PREFIX" in line and "the task queue 'default'" in line
    assert "IMPRESSIONS_TASK_QUEUE" in line
    with override_settings(IMPRESSIONS_KEY_PREFIX="imp"):
        assert impressions.buffer_status() == status  # waiting, scheduled
        caplog.clear()
        tasks.flush_impressions_task.call(*scheduled.args, **scheduled.kwargs)  # its own worker
        assert not [r for r in caplog.records if r.levelno == logging.WARNING]
        assert impressions.buffer_status() == (0, 0, 0, 0, False, 0)
    post.refresh_from_db()
    assert post.impressions == 1
