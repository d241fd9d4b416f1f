"""Snapshot entries the record script never writes (something else wrote them into the buffer)
are set aside by the flush, in Redis, and the rest is applied exactly once: real Redis (and the
real cluster), real PostgreSQL, a flush SIGKILLed on either side of the set-aside."""

import re

import pytest
from django.db import DataError
from django.utils import timezone

from impressions import keys, ledger, periods
from impressions.exceptions import DatabaseUnavailable
from impressions.flush import flush_pending
from impressions.recorder import buffer_status, pending_counts, record_impressions
from tests.factories import make_posts

from .history_check import history_sums, rollup_mismatches
from .support import group_of
from .test_failures import kill_a_flush_at, single_leftover_snapshot_id, totals

pytestmark = pytest.mark.django_db(transaction=True)

SHARD = 5


def today():
    return keys.day_text(periods.day_of(timezone.now()))


def plant(client, posts, grouped=False):
    """Entries written into shard SHARD's pending hash (or, `grouped`, into the group hash of
    each: read as the groups arrive) by something else than the record script, each
    `<something>:<something>` as the record script's are: {field: count} of those the database
    refuses. Beside them, a well-formed one of a post that does not exist (dropped, as a deleted
    post's counts are)."""
    malformed = {
        f"abc:{today()}".encode(): b"3",
        f"{posts[0].id}:20261399".encode(): b"1",
        f"99999999:{today()}".encode(): b"many",
        f"12345678901234567890:{today()}".encode(): b"1",
        # A count that would take the post's total below zero (of another day than the views').
        f"{posts[3].id}:20260101".encode(): b"-50",
    }
    for field, count in {**malformed, f"-7:{today()}".encode(): b"2"}.items():
        group = group_of(field.decode())
        client.hset(
            keys.pending_group_keys(SHARD)[group] if grouped else keys.pending_key(SHARD),
            field,
            count,
        )
    return malformed


def set_aside(client):
    return client.hgetall(keys.set_aside_key(SHARD))


def view(posts, viewers):
    for viewer in range(viewers):
        record_impressions(f"v:{viewer}", [p.id for p in posts])


@pytest.mark.parametrize("grouped", [False, True], ids=["ungrouped", "grouped"])
@pytest.mark.parametrize("batch_size", [2, 10_000])
def test_entries_the_database_refuses_are_set_aside_and_the_rest_applied_once(
    buffer, sql_path, batch_size, grouped
):
    posts = make_posts(4)
    view(posts, 20)
    malformed = plant(buffer, posts, grouped)

    report = flush_pending(batch_size=batch_size)

    assert report.counters_set_aside == len(malformed)
    assert f"{len(malformed)} malformed counters set aside" in str(report)
    expected = dict.fromkeys([p.id for p in posts], 20)
    assert totals(posts) == expected
    # The batches committed before the refused one count in the report too.
    assert (report.impressions_applied, report.posts_updated) == (80, 4)
    assert (report.posts_dropped, report.impressions_dropped) == (1, 2)
    assert history_sums([p.id for p in posts]) == expected
    assert rollup_mismatches() == []
    assert set_aside(buffer) == {
        f"{report.flush_id} ".encode() + field: count for field, count in malformed.items()
    }
    assert buffer_status().set_aside == len(malformed)
    # The snapshots are gone; nothing is left to apply, and the set-aside entries stay put.
    assert pending_counts([p.id for p in posts]) == dict.fromkeys(expected, 0)
    assert flush_pending().impressions_applied == 0
    assert totals(posts) == expected
    assert len(set_aside(buffer)) == len(malformed)


def test_beside_fields_without_a_day_every_entry_is_checked_before_the_first_batch(buffer):
    posts = make_posts(3)
    view(posts, 10)
    malformed = {f"{posts[0].id}\n{posts[1].id}:{today()}".encode(): b"1", b"": b"5"}
    # No day: written by a version before the history; counts on the flush's day.
    buffer.hset(keys.pending_key(SHARD), mapping={**malformed, str(posts[2].id).encode(): b"4"})

    report = flush_pending()

    assert report.counters_set_aside == len(malformed)
    expected = {p.id: 10 + (4 if p == posts[2] else 0) for p in posts}
    assert totals(posts) == expected
    assert history_sums([p.id for p in posts]) == expected
    assert set_aside(buffer) == {
        f"{report.flush_id} ".encode() + field: count for field, count in malformed.items()
    }


def test_an_entry_in_another_group_s_hash_is_applied_once(buffer):
    """A field is ordered by the hash it is in (its group's prefix), not by its id: one written
    into another group's hash (not by the record script) is applied once, in that group."""
    posts = make_posts(3)
    view(posts, 10)
    field = f"{posts[0].id}:{today()}".encode()
    other = (group_of(field.decode()) + 1) % len(keys.GROUPS)
    buffer.hset(keys.pending_group_keys(SHARD)[other], field, 7)

    report = flush_pending(batch_size=2)

    assert report.counters_set_aside == 0
    expected = {p.id: 10 + (7 if p == posts[0] else 0) for p in posts}
    assert totals(posts) == expected
    assert history_sums([p.id for p in posts]) == expected
    assert flush_pending().impressions_applied == 0


@pytest.mark.parametrize("grouped", [False, True], ids=["ungrouped", "grouped"])
@pytest.mark.parametrize("point", ["after-snapshot", "after-set-aside", "before-commit"])
def test_a_flush_killed_around_the_set_aside_sets_each_aside_once(buffer, point, grouped):
    posts = make_posts(4)
    view(posts, 20)
    malformed = plant(buffer, posts, grouped)
    kill_a_flush_at(point)
    killed_id = single_leftover_snapshot_id()

    report = flush_pending()

    assert report.recovered == [killed_id]
    expected = dict.fromkeys([p.id for p in posts], 20)
    assert totals(posts) == expected
    assert history_sums([p.id for p in posts]) == expected
    # Under the killed flush's id: its snapshot held them, whoever moved them.
    assert set_aside(buffer) == {
        f"{killed_id} ".encode() + field: count for field, count in malformed.items()
    }
    assert report.counters_set_aside == (len(malformed) if point == "after-snapshot" else 0)


def test_a_batch_refused_for_another_reason_fails_the_flush_and_keeps_the_counts(
    standalone_buffer, monkeypatch
):
    posts = make_posts(3)
    view(posts, 10)
    calls = []

    def refused(lines, durable=True):
        calls.append(len(lines))
        raise DataError("numeric field overflow")  # as a total past its column's range

    monkeypatch.setattr(ledger, "write_batch", refused)
    with pytest.raises(DatabaseUnavailable, match="numeric field overflow"):
        flush_pending()
    assert len(calls) == 2  # tried again once, after the entries were checked: none set aside
    assert set_aside(standalone_buffer) == {}
    monkeypatch.undo()

    report = flush_pending()
    assert report.counters_set_aside == 0
    assert totals(posts) == dict.fromkeys([p.id for p in posts], 10)


def test_the_dashboard_and_the_metrics_show_the_entries_set_aside(
    superuser_client, client, standalone_buffer
):
    posts = make_posts(4)
    view(posts, 2)
    malformed = plant(standalone_buffer, posts)
    dashboard = "/admin/impressions/dashboard/"
    assert 'id="buffer-set-aside"' not in superuser_client.get(dashboard).content.decode()

    flush_pending()

    html = superuser_client.get(dashboard).content.decode()
    assert re.search(rf'id="buffer-set-aside">{len(malformed)} entries in Redis', html)
    assert "<code>{imp:N}:set-aside</code>" in html
    metrics = client.get("/metrics", HTTP_HOST="10.0.3.17").content.decode()
    assert f"impressions_set_aside_entries {len(malformed)}.0" in metrics
