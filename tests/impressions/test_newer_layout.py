"""A newer build's snapshots beside this build's flush (a rolling deploy that overlaps the workers).

A snapshot id that is not of this build's form (keys.FLUSH_ID) belongs to a build with another
layout: this build's flush, its status reads and its ledger upkeep leave it alone: they do not
read it, note it in the ledger, take it out of the snapshots set or delete it, and say so once
per process. Before, a build found such an id in the set, read its hashes as its own (counting
what it could parse, setting aside the rest), noted it in the ledger and dropped it.
"""

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from casusult.models import Post
from impressions import flush as flush_module
from impressions import keys, scripts
from impressions.flush import flush_pending, new_flush_id
from impressions.models import Flush
from impressions.recorder import buffer_status, pending_counts, record_impressions
from tests.factories import make_posts

from .support import group_of, viewer_in

pytestmark = pytest.mark.django_db

# An id of the form the rule in keys.py gives a later layout, and another a later build may
# have noted in the ledger (a flush of its own whose snapshots this build never sees).
FUTURE_ID = "v2:20261206T120000-0123abcd"
FUTURE_LEDGER_ID = "v2:20261206T110000-89abcdef"
# A snapshot of this build's form that a crashed flush left behind.
LEFT_OVER_ID = "20261206T115500-00c0ffee"


@pytest.fixture
def warned_afresh(monkeypatch):
    """This process has not yet said that it left another layout's snapshots alone."""
    monkeypatch.setattr(flush_module, "_foreign_told", False)


def plant_future_snapshot(buffer, shard, post_ids, day):
    """A newer build's snapshot in `shard`, as this build would find it: the id in the shard's
    snapshots set, hashes under this build's key names, one with fields it cannot read, one with
    fields that look like its own (in that layout they mean something else), its days set and
    its total. Returns {key: dump} of those keys, to compare after."""
    planted = {
        keys.snapshot_key(shard, FUTURE_ID): {f"{i}@{day}": f"7/{i}" for i in post_ids},
        keys.snapshot_key(shard, FUTURE_ID) + ":0": {f"{i}:{day}": 5 for i in post_ids},
    }
    for key, mapping in planted.items():
        buffer.hset(key, mapping=mapping)
    buffer.sadd(keys.snapshot_days_key(shard, FUTURE_ID), day)
    buffer.sadd(keys.snapshots_key(shard), FUTURE_ID)
    buffer.hset(keys.totals_key(shard), f"snapshot:{FUTURE_ID}", 5 * len(post_ids))
    return future_state(buffer, shard)


def future_state(buffer, shard):
    names = [
        keys.snapshot_key(shard, FUTURE_ID),
        keys.snapshot_key(shard, FUTURE_ID) + ":0",
        keys.snapshot_days_key(shard, FUTURE_ID),
    ]
    return {
        **{name: buffer.dump(name) for name in names},
        "member": buffer.sismember(keys.snapshots_key(shard), FUTURE_ID),
        "total": buffer.hget(keys.totals_key(shard), f"snapshot:{FUTURE_ID}"),
    }


def totals_of(posts):
    return dict(Post.objects.filter(id__in=[p.id for p in posts]).values_list("id", "impressions"))


def test_a_newer_build_s_snapshot_is_left_alone_and_the_rest_applied_once(
    buffer, warned_afresh, caplog
):
    posts = make_posts(3)
    ids = [post.id for post in posts]
    shard = 3
    viewers = [viewer_in(shard), viewer_in(shard + 1), "u:elsewhere"]
    for viewer in viewers:
        record_impressions(viewer, ids)
    day = keys.day_text(timezone.localdate())
    # A left-over of this build's form in the same shard: still recovered.
    group = group_of(str(ids[0]))  # the hash the record script would have counted it in
    buffer.hset(keys.snapshot_group_keys(shard, LEFT_OVER_ID)[group], f"{ids[0]}:{day}", 4)
    buffer.sadd(keys.snapshot_days_key(shard, LEFT_OVER_ID), day)
    buffer.sadd(keys.snapshots_key(shard), LEFT_OVER_ID)
    before = plant_future_snapshot(buffer, shard, ids, day)
    # The newer build's ledger: a row for the planted snapshot, another for one gone (both an
    # hour old and more, "running").
    old = timezone.now() - timedelta(hours=2)
    Flush.objects.create(id=FUTURE_LEDGER_ID, started_at=old, outcome="running")
    assert pending_counts(ids) == {ids[0]: 7, ids[1]: 3, ids[2]: 3}

    with caplog.at_level(logging.WARNING, logger="impressions.flush"):
        first = flush_pending()
        record_impressions("u:later", ids)
        second = flush_pending()

    assert (first.impressions_applied, second.impressions_applied) == (13, 3)
    assert first.recovered == [LEFT_OVER_ID]
    assert totals_of(posts) == {ids[0]: 8, ids[1]: 4, ids[2]: 4}
    assert future_state(buffer, shard) == before  # not read into anything, not dropped
    assert buffer.hlen(keys.set_aside_key(shard)) == 0
    assert not Flush.objects.filter(id=FUTURE_ID).exists()
    assert Flush.objects.get(id=FUTURE_LEDGER_ID).outcome == Flush.Outcome.RUNNING
    assert pending_counts(ids) == dict.fromkeys(ids, 0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "1 snapshot" in warnings[0] and FUTURE_ID in warnings[0]


def test_the_ledger_keeps_a_newer_build_s_old_row_while_its_snapshot_is_there(buffer):
    # A newer build's flush applied part of its snapshot and stopped; that build's worker is gone
    # for longer than the ledger's retention. Its row (the marks) must outlive this build's
    # pruning, or that build, back, would apply the snapshot again from no marks.
    day = keys.day_text(timezone.localdate())
    before = plant_future_snapshot(buffer, 2, [1, 2], day)
    old = timezone.now() - timedelta(days=31)
    Flush.objects.create(id=FUTURE_ID, started_at=old, outcome="running", marks={"2": "x"})
    Flush.objects.create(id=FUTURE_LEDGER_ID, started_at=old, outcome="applied")
    flush_pending()
    assert Flush.objects.get(id=FUTURE_ID).marks == {"2": "x"}
    assert not Flush.objects.filter(id=FUTURE_LEDGER_ID).exists()  # no snapshot: pruned
    assert future_state(buffer, 2) == before


def test_an_id_no_ledger_row_can_have_fails_no_flush(buffer):
    # Another layout's ids are left alone whatever they hold; since the pruning keeps their
    # rows, they reach the database: one with a NUL (which PostgreSQL's text refuses) failed
    # every flush at its end (DatabaseUnavailable) after applying its counts.
    posts = make_posts(1)
    buffer.sadd(keys.snapshots_key(2), b"v2:\x00" + FUTURE_ID.encode(), b"v2:\xff", "x" * 100)
    Flush.objects.create(
        id=FUTURE_LEDGER_ID, started_at=timezone.now() - timedelta(days=31), outcome="applied"
    )
    record_impressions("u:1", [posts[0].id])
    assert flush_pending().outcome == Flush.Outcome.APPLIED
    assert totals_of(posts) == {posts[0].id: 1}
    assert not Flush.objects.filter(id=FUTURE_LEDGER_ID).exists()  # pruned as before
    assert buffer.scard(keys.snapshots_key(2)) == 3  # left alone


def test_the_recount_of_a_shard_s_totals_keeps_a_newer_build_s_snapshot_as_it_is(
    buffer, warned_afresh
):
    """A shard whose totals are not exact (a deploy over the version before them) is counted in
    full by the next snapshot (scripts.SNAPSHOT): over this build's snapshots only; a newer
    build's total stays as that build wrote it. Before, its hashes were summed as this build's
    (a value that is no integer failed every flush of the shard)."""
    posts = make_posts(2)
    ids = [post.id for post in posts]
    shard = 5
    record_impressions(viewer_in(shard), ids)
    day = keys.day_text(timezone.localdate())
    before = plant_future_snapshot(buffer, shard, ids, day)
    buffer.hdel(keys.totals_key(shard), "exact")

    assert flush_pending().impressions_applied == 2

    assert totals_of(posts) == dict.fromkeys(ids, 1)
    assert future_state(buffer, shard) == before
    assert buffer.hget(keys.totals_key(shard), "exact") == b"1"
    # The gauges: what this build holds (nothing now) and the newer build's total, as it was.
    status = buffer_status()
    assert (status.pending_impressions, status.in_snapshots) == (0, 10)


@pytest.mark.parametrize(
    ("flush_id", "own"),
    [
        ("20261206T120000-0123abcd", True),
        ("19991231T235959-ffffffff", True),
        ("v2:20261206T120000-0123abcd", False),
        ("20261206T120000-0123abcd:v2", False),
        ("20261206T120000-0123ABCD", False),
        ("20261206T120000-0123abc", False),
        ("20261206T120000-0123abcde", False),
        ("20261206 120000-0123abcd", False),
        ("2026120xT120000-0123abcd", False),
        ("", False),
    ],
)
def test_python_and_the_scripts_recognise_the_same_ids(standalone_buffer, flush_id, own):
    assert keys.is_own_flush_id(flush_id) is own
    assert keys.is_own_flush_id(flush_id.encode()) is own
    lua = scripts.FLUSH_ID + "return is_own(ARGV[1]) and 1 or 0"
    assert standalone_buffer.execute_command("EVAL", lua, 0, flush_id) == int(own)


def test_this_build_s_ids_are_of_its_form():
    assert all(keys.is_own_flush_id(new_flush_id()) for _ in range(100))
