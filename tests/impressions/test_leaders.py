"""The open days' leaders: kept exact by every flush batch (both SQL paths), across midnight,
under parts at once, through the roll-up of their day, trimmed; the tops read from them agree
with a sort of the rows."""

import random
import threading
from datetime import datetime, time, timedelta

import pytest
from django.db import connections
from django.test import override_settings
from django.utils import timezone

from impressions import history_writer, periods, rollup, stats
from impressions.flush import flush_pending
from impressions.models import OpenDayLeaders
from impressions.recorder import record_impressions
from tests.factories import make_posts

from .history_check import daily_counts, leaders_mismatches, rollup_mismatches

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def few_leaders(monkeypatch):
    """Three leaders a day: a top that objects enter and leave within a few flushes."""
    monkeypatch.setattr(OpenDayLeaders, "LEADERS", 3)


def moment(days_ago):
    day = stats.today() - timedelta(days=days_ago)
    return timezone.make_aware(datetime.combine(day, time(12)), timezone.get_default_timezone())


def brute_top(day, limit):
    rows = [(o, n) for (o, d), n in daily_counts().items() if d == day]
    return sorted(rows, key=lambda row: (-row[1], row[0]))[:limit]


@pytest.mark.parametrize("days_ago", [0, 1])
def test_leaders_follow_random_flushes_on_both_paths(
    standalone_buffer, few_leaders, sql_path, days_ago
):
    rng = random.Random(3 + days_ago)
    ids = [p.id for p in make_posts(15)]
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        for round_ in range(12):
            for viewer in range(rng.randint(1, 6)):
                record_impressions(f"u:{round_}-{viewer}", rng.sample(ids, 4), now=moment(days_ago))
            # Late counts of yesterday now and then (a midnight between views and flush).
            if round_ % 3 == 0:
                record_impressions(f"late:{round_}", rng.sample(ids, 2), now=moment(days_ago + 1))
            flush_pending(batch_size=rng.choice([2, 5, 1000]))
            assert leaders_mismatches() == []
        day = stats.today() - timedelta(days=days_ago)
        assert stats.top_in(periods.DAY, day, 3) == brute_top(day, 3)
        # Deeper than the leaders: a sort of the day's rows.
        assert stats.top_in(periods.DAY, day, 10) == brute_top(day, 10)


def test_parts_at_once_keep_the_leaders_exact_and_the_trim_keeps_the_top(
    standalone_buffer, few_leaders, monkeypatch
):
    """Four parts at once (the flushes' own trim held back), then the trim."""
    trim = history_writer.trim_leaders
    monkeypatch.setattr(history_writer, "trim_leaders", lambda: 0)
    ids = [p.id for p in make_posts(40)]
    rng = random.Random(5)
    for viewer in range(120):
        record_impressions(f"u:{viewer}", rng.sample(ids, rng.randint(1, 12)))
    outcome = {}

    def part(number):
        try:
            outcome[number] = flush_pending(part=number, parts=4, window="w", batch_size=9)
        except Exception as error:
            outcome[number] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=part, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not [error for error in outcome.values() if isinstance(error, Exception)]
    assert leaders_mismatches() == []
    today = stats.today()
    assert OpenDayLeaders.objects.filter(day=today).count() > 2 * 3
    assert trim() > 0
    assert OpenDayLeaders.objects.filter(day=today).count() <= 2 * 3
    assert leaders_mismatches() == []


def test_the_roll_up_keeps_a_day_s_leaders_until_it_is_done(standalone_buffer, few_leaders):
    ids = [p.id for p in make_posts(12)]
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        for viewer in range(8):
            record_impressions(f"u:{viewer}", ids[viewer:], now=moment(1))
        flush_pending()
        yesterday = stats.today() - timedelta(days=1)
        rollup.start_next_day(yesterday)
        rollup.move_batch(yesterday, 6)  # the 6 smallest ids moved, the others open
        for viewer in range(5):  # late counts on both sides of the mark
            record_impressions(f"late:{viewer}", [ids[0], ids[-1]], now=moment(1))
        flush_pending()
        assert leaders_mismatches() == []
        assert rollup_mismatches() == []
        assert stats.top_in(periods.DAY, yesterday, 3) == brute_top(yesterday, 3)
        rollup.roll_up(pace=0)
        assert not OpenDayLeaders.objects.filter(day=yesterday).exists()
        assert stats.top_in(periods.DAY, yesterday, 3) == brute_top(yesterday, 3)


def test_a_batch_upserts_at_most_its_own_top_of_each_day(
    standalone_buffer, few_leaders, sql_path, monkeypatch
):
    """A day with no leaders yet: a batch of 12 posts upserts its own top 3, not all 12 (which
    the trim would then delete), on both SQL paths, for each of its days."""
    monkeypatch.setattr(history_writer, "trim_leaders", lambda: 0)
    ids = [p.id for p in make_posts(12)]
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        for viewer, start in enumerate((0, 3, 6, 9, 9)):  # 9.. twice, 6.. and up more
            record_impressions(f"u:{viewer}", ids[start:], now=moment(0))
            record_impressions(f"y:{viewer}", ids[: 12 - start], now=moment(1))
        flush_pending(batch_size=1000)
        for day in (stats.today(), stats.today() - timedelta(days=1)):
            assert OpenDayLeaders.objects.filter(day=day).count() == 3
        assert leaders_mismatches() == []
        flush_pending()
        record_impressions("u:late", ids[:4], now=moment(0))
        flush_pending(batch_size=1000)
        assert leaders_mismatches() == []
