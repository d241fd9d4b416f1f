"""The flush writes the per-day history: days of the site's TIME_ZONE, exact across midnight,
summing to the totals, read back through the public API; pruning; old snapshots; both SQL paths."""

import importlib
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings
from django.utils import timezone

import impressions
from casusult.models import Post
from impressions import keys, periods, rollup, stats
from impressions.flush import flush_pending
from impressions.models import (
    DailyImpressions,
    Flush,
    HistoryRollup,
    OpenDailyImpressions,
    PeriodImpressions,
    SiteDailyImpressions,
)
from impressions.recorder import buffer_status, pending_counts, record_impressions
from tests.factories import make_posts

from .history_check import (
    daily_counts,
    history_sums,
    open_days_misplaced,
    rollup_mismatches,
    stored_days,
)
from .support import SQLITE_FIVE_POSTS

pytestmark = pytest.mark.django_db


def totals(posts):
    return dict(Post.objects.filter(id__in=[p.id for p in posts]).values_list("id", "impressions"))


def local(zone, *parts):
    return datetime(*parts, tzinfo=ZoneInfo(zone))


# Midnights that also end a month (Saturday 31 October 2026) and a week (Sunday 29 November).
@pytest.mark.parametrize("zone", ["Asia/Kolkata", "America/Los_Angeles"])
@pytest.mark.parametrize(
    "last_day", [date(2026, 10, 31), date(2026, 11, 29)], ids=["month-end", "week-end"]
)
def test_impressions_either_side_of_midnight_land_on_their_own_days(buffer, zone, last_day):
    a, b = make_posts(2)
    before = local(zone, last_day.year, last_day.month, last_day.day, 23, 59, 59)
    after = before + timedelta(seconds=2)  # 00:00:01 the next day, the site's time
    next_day = last_day + timedelta(days=1)
    # In UTC both moments fall on one day: only the site's time zone splits them.
    assert before.astimezone(UTC).date() == after.astimezone(UTC).date()
    with override_settings(TIME_ZONE=zone, IMPRESSIONS_HISTORY_DAYS=0):
        record_impressions("u:1", [a.id, b.id], now=before)
        record_impressions("u:2", [a.id], now=after.timestamp())  # Unix seconds work too
        record_impressions("u:1", [a.id], now=after)  # u:1 saw a 2 s ago: not counted
        record_impressions("u:3", [b.id], now=after)
        assert pending_counts([a.id, b.id]) == {a.id: 2, b.id: 2}
        flush_pending()  # one flush applies both days
        rollup.roll_up(pace=0)  # the days ended: the daily task moves them to the rollups

        assert totals([a, b]) == {a.id: 2, b.id: 2}
        assert impressions.history([a.id, b.id], last_day, next_day) == {
            a.id: {last_day: 1, next_day: 1},
            b.id: {last_day: 1, next_day: 1},
        }
        assert impressions.top_posts(next_day, next_day) == [(a.id, 1), (b.id, 1)]
        assert rollup_mismatches() == []
    # The day ends a week or a month, so the two days went to different rollup rows.
    week_or_month = PeriodImpressions.objects.filter(object_id=a.id).values_list("start", "count")
    assert len(week_or_month) == 3
    assert sorted(count for _, count in week_or_month) == [1, 1, 2]


def test_utc_is_the_default_and_a_request_time_zone_changes_nothing(buffer):
    post = make_posts(1)[0]
    moment = datetime(2026, 11, 18, 23, 30, tzinfo=UTC)
    with timezone.override(ZoneInfo("Asia/Tokyo")), override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        record_impressions("u:1", [post.id], now=moment)  # 08:30 on the 19th in Tokyo
        flush_pending()
    assert daily_counts([post.id]) == {(post.id, date(2026, 11, 18)): 1}


def test_pending_counts_and_buffer_status_sum_a_post_over_its_days(buffer):
    post = make_posts(1)[0]
    day = datetime(2026, 11, 18, 12, tzinfo=UTC)
    for offset in range(3):
        for viewer in range(4):
            record_impressions(f"u:{viewer}", [post.id], now=day + timedelta(days=offset))
    assert pending_counts([post.id]) == {post.id: 12}
    status = buffer_status()
    assert status.pending_impressions == 12
    viewer_shards = {keys.shard_of(f"u:{viewer}") for viewer in range(4)}
    assert status.pending_entries == 3 * len(viewer_shards)  # one counter per shard, post, day
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        flush_pending()
    assert impressions.history([post.id], date(2026, 11, 18), date(2026, 11, 20)) == {
        post.id: {date(2026, 11, 18): 4, date(2026, 11, 19): 4, date(2026, 11, 20): 4}
    }
    assert pending_counts([post.id]) == {post.id: 0}
    assert buffer_status().pending_entries == 0


def test_snapshots_of_the_previous_version_count_on_the_flush_day(buffer):
    """Fields without a day (left by the version before the history) still count, on the day
    of the flush that applies them."""
    a, b = make_posts(2)
    shard = keys.shard_of("u:old")
    buffer.hset(keys.snapshot_key(shard, "20261201T000000-01d01d00"), mapping={a.id: 5, b.id: 1})
    buffer.sadd(keys.snapshots_key(shard), "20261201T000000-01d01d00")
    buffer.hset(keys.pending_key(shard), mapping={a.id: 2})  # an old web process, still running
    record_impressions("u:new", [a.id])
    assert pending_counts([a.id, b.id]) == {a.id: 8, b.id: 1}

    report = flush_pending()

    today = periods.day_of(timezone.now())
    assert report.recovered == ["20261201T000000-01d01d00"]
    assert totals([a, b]) == {a.id: 8, b.id: 1}
    assert impressions.history([a.id, b.id], today, today) == {a.id: {today: 8}, b.id: {today: 1}}
    assert rollup_mismatches() == []
    assert pending_counts([a.id, b.id]) == {a.id: 0, b.id: 0}


def test_a_flush_the_version_before_the_groups_left_half_applied_is_finished_once(buffer):
    """Its ledger row's marks are fields of the ungrouped hash in plain text order."""
    posts = make_posts(3)
    ids = sorted(str(post.id) for post in posts)  # text order: the old version's batches
    flush_id, shard, day = "20261201T000000-01d01d01", 4, "20261201"
    buffer.hset(keys.snapshot_key(shard, flush_id), mapping={f"{i}:{day}": 3 for i in ids})
    buffer.sadd(keys.snapshots_key(shard), flush_id)
    Flush.objects.create(  # it applied the first two, then died
        id=flush_id,
        started_at=timezone.now(),
        outcome=Flush.Outcome.RUNNING,
        marks={str(shard): f"{ids[1]}:{day}"},
        impressions_applied=6,
    )
    Post.objects.filter(id__in=[int(i) for i in ids[:2]]).update(impressions=3)

    report = flush_pending()

    assert report.recovered == [flush_id]
    assert (report.impressions_applied, report.posts_updated) == (3, 1)
    assert totals(posts) == dict.fromkeys([post.id for post in posts], 3)
    assert Flush.objects.get(id=flush_id).outcome == Flush.Outcome.APPLIED


def test_history_read_through_the_public_api_after_real_flushes(buffer):
    posts = make_posts(4)
    ids = [p.id for p in posts]
    first = datetime(2026, 11, 16, 10, tzinfo=UTC)  # a Monday
    expected = {post_id: {} for post_id in ids}
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        for offset in range(10):
            day = (first + timedelta(days=offset)).date()
            for rank, post_id in enumerate(ids):
                viewers = (offset + 1) * (rank + 1) % 5  # some days without a post's views
                for viewer in range(viewers):
                    record_impressions(
                        f"s:{offset}-{viewer}", [post_id], now=first + timedelta(days=offset)
                    )
                if viewers:
                    expected[post_id][day] = viewers
            if offset % 3 == 2:
                flush_pending()  # several flushes add to the same rows
        flush_pending()

        start, end = date(2026, 11, 16), date(2026, 11, 25)
        assert impressions.history(ids, start, end) == expected
        assert history_sums(ids) == totals(posts)
        week = {
            p: sum(n for d, n in days.items() if d <= date(2026, 11, 22))
            for p, days in expected.items()
        }
        ranked = sorted(
            ((p, n) for p, n in week.items() if n), key=lambda item: (-item[1], item[0])
        )
        assert impressions.top_posts(start, date(2026, 11, 22), limit=3) == ranked[:3]
        assert rollup_mismatches() == []


def test_deleted_posts_leave_no_history(buffer):
    kept, gone = make_posts(2)
    record_impressions("u:1", [kept.id, gone.id])
    gone.delete()
    report = flush_pending()
    assert (report.posts_dropped, report.impressions_dropped) == (1, 1)
    assert history_sums([kept.id, gone.id]) == {kept.id: 1, gone.id: 0}
    assert rollup_mismatches() == []


def test_the_flush_prunes_history_older_than_the_setting(standalone_buffer):
    post = make_posts(1)[0]
    today = periods.day_of(timezone.now())
    now = timezone.now()
    # 10 to 16 days kept, so that the oldest kept day is a Monday whatever today is: its week
    # starts within the kept history and rolls up (a week or month starting earlier is not kept).
    keep = 10 + (today - timedelta(days=9)).weekday()
    oldest = today - timedelta(days=keep - 1)
    for days_ago in (0, keep - 1, keep, 40):
        record_impressions(f"u:{days_ago}", [post.id], now=now - timedelta(days=days_ago))
    with override_settings(IMPRESSIONS_HISTORY_DAYS=keep):
        flush_pending()  # no history for the days before the oldest kept
        assert stored_days() == {today, oldest}
        assert set(SiteDailyImpressions.objects.values_list("day", flat=True)) == {today, oldest}
        assert totals([post]) == {post.id: 4}  # the totals get every count
        rollup.roll_up(pace=0)
        week = PeriodImpressions.objects.get(period=PeriodImpressions.Period.WEEK, start=oldest)
        assert week.count == 1
        assert not PeriodImpressions.objects.filter(start__lt=oldest).exists()
        # Rows kept by a longer setting go at the next daily roll-up once the setting is shorter.
        with override_settings(IMPRESSIONS_HISTORY_DAYS=1):
            rollup.roll_up(pace=0)
            assert stored_days() == {today}
            assert set(SiteDailyImpressions.objects.values_list("day", flat=True)) == {today}
            assert totals([post]) == {post.id: 4}


def test_history_days_zero_keeps_everything(standalone_buffer, history_rows):
    history_rows(1, date(2000, 1, 3), 7)
    post = make_posts(1)[0]
    record_impressions("u:1", [post.id], now=datetime(2001, 2, 3, tzinfo=UTC))
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        flush_pending()
    assert stored_days() == {date(2000, 1, 3), date(2001, 2, 3)}
    with override_settings(IMPRESSIONS_HISTORY_DAYS=400):
        # The second day rolls up (no week or month row: they start before the oldest kept day),
        # then both go: daily rows, the first day's week and month rows, site rows.
        assert rollup.roll_up(pace=0).rows_pruned == 2 + 2 + 2


def test_batches_upsert_existing_rows_on_both_paths(standalone_buffer, sql_path):
    posts = make_posts(7)
    ids = [p.id for p in posts]
    sunday = datetime(2026, 11, 29, 12, tzinfo=UTC)
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        for round_ in range(3):
            for viewer in range(3):
                record_impressions(f"u:{round_}-{viewer}", ids[viewer:], now=sunday)
                record_impressions(
                    f"s:{round_}-{viewer}", ids[: viewer + 2], now=sunday + timedelta(days=1)
                )
            flush_pending(batch_size=2)  # the second and third rounds update existing rows
    assert history_sums(ids) == totals(posts)
    assert sum(totals(posts).values()) == 3 * (7 + 6 + 5 + 2 + 3 + 4)
    assert rollup_mismatches() == []


class ReadReplicaRouter:
    """Django's primary/replica router: every read to 'replica'. No such database is configured
    here, so a read sent there fails: it stands for a replica's lagging copy."""

    def db_for_read(self, model, **hints):
        return "replica"


def test_a_read_replica_router_sends_no_read_of_the_flush_or_the_roll_up_there(
    standalone_buffer, sql_path
):
    """The flush, the roll-up and the history read what they write, in their transactions: a
    replica's copy, a moment behind, would roll up the wrong days or drop counts of new rows."""
    posts = make_posts(3)
    ids = [p.id for p in posts]
    saturday = datetime(2026, 11, 28, 12, tzinfo=UTC)
    sunday, monday = date(2026, 11, 29), date(2026, 11, 30)
    routers = [f"{__name__}.ReadReplicaRouter"]
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0, DATABASE_ROUTERS=routers):
        for viewer in range(2):
            record_impressions(f"u:{viewer}", ids, now=saturday)
        record_impressions("u:9", ids[:1], now=saturday + timedelta(days=2))  # Monday
        flush_pending(batch_size=2)
        rollup.roll_up(pace=0)
        history = impressions.history(ids, saturday.date(), monday)
        top = impressions.top_posts(saturday.date(), monday)
        week = stats.top_in(periods.WEEK, sunday)
    assert history == {
        ids[0]: {saturday.date(): 2, monday: 1},
        ids[1]: {saturday.date(): 2},
        ids[2]: {saturday.date(): 2},
    }
    assert top == [(ids[0], 3), (ids[1], 2), (ids[2], 2)]
    assert week == [(ids[0], 2), (ids[1], 2), (ids[2], 2)]
    assert totals(posts) == {ids[0]: 3, ids[1]: 2, ids[2]: 2}
    assert rollup_mismatches() == []


# Runs in a child process on a fresh SQLite database (the database of `make run`): the portable
# path for real, midnight in a non-UTC TIME_ZONE, an update of existing rows, a deleted post.
ON_SQLITE = (
    SQLITE_FIVE_POSTS
    + """
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.test import override_settings

import impressions
from impressions import rollup, stats
from impressions.flush import flush_pending
from impressions.models import OpenDailyImpressions
from impressions.recorder import record_impressions
from tests.impressions.history_check import history_sums, rollup_mismatches

before = datetime(2026, 11, 29, 23, 59, 59, tzinfo=ZoneInfo("Asia/Kolkata"))  # a Sunday
after = before + timedelta(seconds=2)
with override_settings(TIME_ZONE="Asia/Kolkata", IMPRESSIONS_HISTORY_DAYS=0):
    record_impressions("u:1", ids, now=before)
    record_impressions("u:2", ids[:3], now=after)
    flush_pending(batch_size=2)
    record_impressions("u:3", ids, now=after)  # rows of that day exist now: updated
    Post.objects.filter(id=ids[4]).delete()
    report = flush_pending(batch_size=2)
    out = {
        "ids": ids,
        "dropped": report.impressions_dropped,
        "totals": dict(Post.objects.values_list("id", "impressions")),
        "sums": history_sums(ids),
        "mismatches": [str(m) for m in rollup_mismatches()],
        "history": {
            post_id: {str(day): n for day, n in days.items()}
            for post_id, days in impressions.history(ids, before.date(), after.date()).items()
        },
        "top": impressions.top_posts(after.date(), after.date()),
    }
    # The ended days roll up; today's counts go to the open rows, which tomorrow's roll-up moves.
    rollup.roll_up(pace=0)
    record_impressions("u:4", ids[:2])
    flush_pending()
    out["open_rows"] = OpenDailyImpressions.objects.count()
    rollup.roll_up(today=stats.today() + timedelta(days=1), pace=0)
    out["open_rows_after"] = OpenDailyImpressions.objects.count()
    out["mismatches_after"] = [str(m) for m in rollup_mismatches()]
    out["sums_after"] = history_sums(ids[:2])
    print(json.dumps(out))
"""
)


def test_the_portable_path_on_sqlite(on_sqlite):
    out = on_sqlite(ON_SQLITE)
    a, b, c, d, gone = out["ids"]
    assert out["dropped"] == 1
    totals = {int(post_id): n for post_id, n in out["totals"].items()}
    assert totals == {a: 3, b: 3, c: 3, d: 2}
    assert {int(post_id): n for post_id, n in out["sums"].items()} == {**totals, gone: 1}
    assert out["mismatches"] == []
    sunday, monday = "2026-11-29", "2026-11-30"
    assert out["history"] == {
        **{str(p): {sunday: 1, monday: 2} for p in (a, b, c)},
        str(d): {sunday: 1, monday: 1},
        str(gone): {sunday: 1},  # applied before the post was deleted; its last count dropped
    }
    assert out["top"] == [[a, 2], [b, 2], [c, 2], [d, 1]]
    assert (out["open_rows"], out["open_rows_after"], out["mismatches_after"]) == (2, 0, [])
    assert {int(post_id): n for post_id, n in out["sums_after"].items()} == {a: 4, b: 4}


def rolled_through():
    return HistoryRollup.objects.get(id=1).rolled_through


def test_ended_days_are_rolled_up_once_and_reads_agree_before_and_after(buffer):
    a, b = make_posts(2)
    today = periods.day_of(timezone.now())
    day = today + timedelta(days=3)  # a day the roll-up does not roll up yet
    moment = timezone.now() + timedelta(days=3)
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        record_impressions("u:1", [a.id, b.id], now=moment)
        record_impressions("u:2", [a.id], now=moment)
        flush_pending()
        assert rollup.roll_up(pace=0).days == []  # no ended day is open
        # The roll-up noted the days before today done; the flush wrote the open rows of `day`.
        assert rolled_through() == today - timedelta(days=1)
        assert not PeriodImpressions.objects.exists()
        reads = [
            lambda: stats.top_in(periods.WEEK, day),
            lambda: stats.top_in(periods.MONTH, day),
            lambda: impressions.top_posts(periods.week_of(day), day),
            lambda: impressions.top_posts(periods.month_of(day), periods.next_month(day)),
        ]
        before = [read() for read in reads]
        assert before[0] == [(a.id, 2), (b.id, 1)]
        assert before[1] == before[0]
        # An open day's rows are in the open table only, until the day is rolled up.
        assert set(OpenDailyImpressions.objects.values_list("object_id", "day", "count")) == {
            (a.id, day, 2),
            (b.id, day, 1),
        }
        assert not DailyImpressions.objects.exists()

        # The roll-up of the day after `day`, in batches of one row.
        assert rollup.roll_up(today=day + timedelta(days=1), batch_size=1, pace=0).days == [day]
        assert rolled_through() == day
        assert PeriodImpressions.objects.count() == 4
        assert not OpenDailyImpressions.objects.exists()
        assert DailyImpressions.objects.count() == 2
        assert rollup_mismatches() == []
        assert [read() for read in reads] == before

        # A count for a day rolled up already goes to its week and month rows at once.
        record_impressions("u:3", [b.id], now=moment)
        flush_pending()
        assert rolled_through() == day
        assert rollup_mismatches() == []
        assert stats.top_in(periods.WEEK, day) == [(a.id, 2), (b.id, 2)]
        assert history_sums([a.id, b.id]) == totals([a, b])


def test_the_migration_moves_the_days_after_rolled_through_to_the_open_table(db):
    """Migration 0004 on a site with history: the days not rolled up move, nothing is lost."""
    from django.apps import apps
    from django.db import connection

    migration = importlib.import_module("impressions.migrations.0004_daily_open")
    rolled = date(2026, 11, 30)
    HistoryRollup.objects.update_or_create(id=1, defaults={"rolled_through": rolled})
    rows = {(1, rolled - timedelta(days=1)): 3, (1, rolled): 4, (1, rolled + timedelta(days=1)): 5}
    rows[2, rolled + timedelta(days=2)] = 6
    DailyImpressions.objects.bulk_create(
        DailyImpressions(object_id=o, day=d, count=n) for (o, d), n in rows.items()
    )
    editor = SimpleNamespace(connection=connection)

    migration.open_days_out(apps, editor)
    assert daily_counts() == rows
    assert set(OpenDailyImpressions.objects.values_list("object_id", "day")) == {
        key for key in rows if key[1] > rolled
    }
    assert open_days_misplaced() == []

    migration.open_days_back(apps, editor)  # the reverse migration
    assert not OpenDailyImpressions.objects.exists()
    assert daily_counts() == rows
