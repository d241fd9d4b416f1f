"""The history read API on PostgreSQL: ranges, top posts (with the threshold search), CSV."""

import io
import random
from collections import Counter
from datetime import date, datetime, timedelta

import pytest
from django.test import override_settings

from impressions import periods, stats
from impressions.models import DailyImpressions, OpenDailyImpressions

from .history_rows import add_many

pytestmark = pytest.mark.django_db

NOV = [date(2026, 11, d) for d in range(1, 31)]


def test_history_is_inclusive_and_leaves_out_empty_days(history_rows):
    history_rows(1, NOV[0], 3)
    history_rows(1, NOV[4], 2)
    history_rows(1, NOV[4], 5)  # a second flush adds to the same day
    history_rows(1, NOV[9], 7)
    history_rows(2, NOV[4], 1)
    history_rows(3, NOV[4], 9)  # not asked for
    result = stats.history([1, 2, 4], NOV[0], NOV[4])
    assert result == {1: {NOV[0]: 3, NOV[4]: 7}, 2: {NOV[4]: 1}, 4: {}}
    assert list(stats.history(["2"], NOV[5], NOV[9])) == [2]  # ids as strings are fine
    assert stats.history([1], NOV[9], NOV[9]) == {1: {NOV[9]: 7}}
    assert stats.history([], NOV[0], NOV[9]) == {}


@pytest.mark.parametrize("lookups", ["each", "range"])
def test_history_reads_the_same_by_lookups_of_the_daily_key_or_by_its_range(monkeypatch, lookups):
    """The daily rows' key is day first: history() looks each (day, object) up, and past
    HISTORY_KEYS lookups reads the range; both say the same, the open rows added."""
    if lookups == "range":
        monkeypatch.setattr(stats, "HISTORY_KEYS", 1)
    DailyImpressions.objects.bulk_create(
        DailyImpressions(object_id=o, day=d, count=n)
        for o, d, n in (
            (1, NOV[4], 5),
            (1, NOV[0], 3),
            (1, NOV[2], 4),
            (3, NOV[4], 9),
            (2, NOV[5], 8),
        )
    )
    OpenDailyImpressions.objects.bulk_create(
        OpenDailyImpressions(object_id=o, day=d, count=n)
        for o, d, n in ((2, NOV[3], 6), (1, NOV[4], 2), (2, NOV[4], 1))
    )
    result = stats.history([1, 2, 4], NOV[0], NOV[4])
    assert result == {1: {NOV[0]: 3, NOV[2]: 4, NOV[4]: 7}, 2: {NOV[3]: 6, NOV[4]: 1}, 4: {}}
    assert list(result[1]) == [NOV[0], NOV[2], NOV[4]]  # days in order
    assert stats.history([1, 1], NOV[4], NOV[4]) == {1: {NOV[4]: 7}}  # asked twice, counted once


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="after end"):
        stats.history([1], NOV[2], NOV[1])
    with pytest.raises(TypeError, match=r"start must be a datetime\.date"):
        stats.top_posts(datetime(2026, 11, 1), NOV[1])
    with pytest.raises(TypeError, match="end must be"):
        stats.daily_totals(NOV[1], "2026-11-02")


def test_daily_totals_sum_the_site(history_rows):
    history_rows(1, NOV[0], 3)
    history_rows(2, NOV[0], 4)
    history_rows(2, NOV[2], 1)
    assert stats.daily_totals(NOV[0], NOV[2]) == {NOV[0]: 7, NOV[2]: 1}
    assert stats.daily_totals(NOV[1], NOV[1]) == {}
    assert stats.filled({NOV[2]: 1}, NOV[1], NOV[3]) == [(NOV[1], 0), (NOV[2], 1), (NOV[3], 0)]


def test_top_posts_highest_first_ties_by_id_limited(history_rows):
    for object_id, day, count in [
        (5, NOV[1], 10),
        (3, NOV[2], 4),
        (3, NOV[3], 6),  # 3: 10, ties with 5, smaller id first
        (9, NOV[2], 12),
        (7, NOV[2], 1),
        (8, NOV[20], 100),  # outside the range
        (8, NOV[0], 100),  # outside the range
    ]:
        history_rows(object_id, day, count)
    assert stats.top_posts(NOV[1], NOV[3]) == [(9, 12), (3, 10), (5, 10), (7, 1)]
    assert stats.top_posts(NOV[1], NOV[3], limit=2) == [(9, 12), (3, 10)]
    assert stats.top_posts(NOV[1], NOV[3], limit=0) == []
    assert stats.top_posts(NOV[4], NOV[19]) == []


def test_top_in_reads_the_day_week_and_month(history_rows):
    wednesday = date(2026, 11, 18)
    history_rows(1, wednesday, 2)
    history_rows(2, wednesday - timedelta(days=1), 5)  # Tuesday, same week
    history_rows(3, date(2026, 11, 2), 9)  # same month, an earlier week
    history_rows(4, date(2026, 10, 31), 50)  # last month
    assert stats.top_in(periods.DAY, wednesday) == [(1, 2)]
    assert stats.top_in(periods.WEEK, wednesday) == [(2, 5), (1, 2)]
    assert stats.top_in(periods.MONTH, wednesday) == [(3, 9), (2, 5), (1, 2)]
    assert stats.top_in(periods.MONTH, wednesday, limit=1) == [(3, 9)]


@pytest.mark.parametrize("period", ["week", "W", periods.OPEN_DAY, None])
def test_top_in_refuses_an_unknown_period_naming_the_known_ones(period):
    with pytest.raises(
        ValueError, match=r"period must be periods\.DAY, WEEK or MONTH \('d', 'w', 'm'\)"
    ):
        stats.top_in(period, date(2026, 11, 18))


def test_top_in_refuses_a_datetime():
    with pytest.raises(TypeError, match=r"must be a datetime\.date, not datetime"):
        stats.top_in(periods.DAY, datetime(2026, 11, 18, 12))


def brute_force_top(rows, start, end, limit):
    totals = Counter()
    for object_id, day, count in rows:
        if start <= day <= end:
            totals[object_id] += count
    return sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:limit]


def random_rows(rng, objects, first_day, days, skew):
    rows = []
    for object_id in range(1, objects + 1):
        popularity = rng.paretovariate(skew) if skew else 1
        for offset in rng.sample(range(days), rng.randrange(1, days)):
            rows.append(
                (
                    object_id,
                    first_day + timedelta(days=offset),
                    1 + int(rng.random() * popularity * 3),
                )
            )
    return rows


@pytest.mark.parametrize("skew", [1.2, None])  # heavy-tailed popularity, and none (many ties)
def test_top_posts_matches_brute_force_on_random_ranges(skew, monkeypatch):
    rng = random.Random(11)
    first = date(2026, 7, 27)
    rows = random_rows(rng, objects=60, first_day=first, days=120, skew=skew)
    add_many(rows)
    rounds = Counter()
    original = stats.ranked_sums

    def counting(pieces, limit, object_ids=None):
        rounds["candidates" if object_ids is not None else "group-by"] += 1
        return original(pieces, limit, object_ids)

    monkeypatch.setattr(stats, "ranked_sums", counting)
    monkeypatch.setattr(stats, "FIRST_DEPTH", 3)  # small, so several rounds happen
    for _ in range(40):
        start = first + timedelta(days=rng.randrange(120))
        end = min(start + timedelta(days=rng.randrange(100)), first + timedelta(days=119))
        limit = rng.choice([1, 3, 10])
        with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
            assert stats.top_posts(start, end, limit) == brute_force_top(rows, start, end, limit)
    assert rounds["candidates"] > 0


def test_top_posts_falls_back_to_one_group_by_past_the_candidate_cap(monkeypatch):
    rng = random.Random(3)
    rows = random_rows(rng, objects=40, first_day=NOV[0], days=20, skew=None)
    add_many(rows)
    monkeypatch.setattr(stats, "MAX_CANDIDATES", 5)
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        assert stats.top_posts(NOV[0], NOV[19], 10) == brute_force_top(rows, NOV[0], NOV[19], 10)


def test_top_posts_counts_from_the_oldest_kept_day(history_rows, monkeypatch):
    today = date(2026, 11, 30)
    monkeypatch.setattr(stats, "today", lambda: today)
    history_rows(1, date(2026, 11, 5), 100)  # older than 10 days: pruned soon, not counted
    history_rows(1, date(2026, 11, 25), 1)
    history_rows(2, date(2026, 11, 26), 2)
    with override_settings(IMPRESSIONS_HISTORY_DAYS=10):
        assert stats.oldest_kept_day() == date(2026, 11, 21)
        assert stats.top_posts(date(2026, 11, 1), today) == [(2, 2), (1, 1)]
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        assert stats.oldest_kept_day() is None
        assert stats.top_posts(date(2026, 11, 1), today) == [(1, 101), (2, 2)]


def test_csv_has_every_day_of_every_post_in_order(history_rows):
    history_rows(7, NOV[1], 4)
    history_rows(3, NOV[2], 2)
    out = io.StringIO()
    stats.write_csv(out, [7, 3], NOV[0], NOV[2])
    assert out.getvalue() == (
        "post_id,day,impressions\n"
        "7,2026-11-01,0\n"
        "7,2026-11-02,4\n"
        "7,2026-11-03,0\n"
        "3,2026-11-01,0\n"
        "3,2026-11-02,0\n"
        "3,2026-11-03,2\n"
    )


def test_top_posts_of_all_time_reads_up_to_today(history_rows):
    # date.max has no next month: the cover of date.min..date.max raised ValueError.
    history_rows(4, NOV[2], 5)
    history_rows(6, NOV[3], 2)
    assert stats.top_posts(date.min, date.max) == [(4, 5), (6, 2)]
    assert stats.top_posts(date.max, date.max) == []
