"""Daylight-saving time: impressions either side of a zone's clock changes land on their own
TIME_ZONE days, the 23- and 25-hour days roll up whole, and the dashboard's days, weeks and
months hold each day once, under USE_TZ = True and False."""

import re
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
import redis
from django.contrib.messages import get_messages
from django.test import override_settings
from django.utils import timezone

import impressions
from casusult.models import Post
from impressions import dashboard, flush_now, ledger, rollup, stats, tasks
from impressions.conf import conf
from impressions.flush import flush_pending
from impressions.models import Flush, PeriodImpressions
from impressions.recorder import record_impressions
from tests.factories import make_posts
from tests.queues.rq.support import rq_settings

from .history_check import rollup_mismatches

pytestmark = pytest.mark.django_db

S = timedelta(seconds=1)
# The 2026 clock changes (UTC instants): (the one that skips local time, the one that repeats it).
TRANSITIONS = {
    "Europe/Berlin": (
        datetime(2026, 3, 29, 1, tzinfo=UTC),
        datetime(2026, 10, 25, 1, tzinfo=UTC),
    ),
    "America/New_York": (
        datetime(2026, 3, 8, 7, tzinfo=UTC),
        datetime(2026, 11, 1, 6, tzinfo=UTC),
    ),
    # 30 minutes: a day of 23.5 and one of 24.5 hours.
    "Australia/Lord_Howe": (
        datetime(2026, 10, 3, 15, 30, tzinfo=UTC),
        datetime(2026, 4, 4, 15, tzinfo=UTC),
    ),
    # At midnight: on 6 September the day starts at 01:00; on 4 April 23:00-24:00 comes twice.
    "America/Santiago": (
        datetime(2026, 9, 6, 4, tzinfo=UTC),
        datetime(2026, 4, 5, 3, tzinfo=UTC),
    ),
    # 8 March starts at 01:00; on 1 November 00:00-01:00 comes twice (midnight too).
    "America/Havana": (
        datetime(2026, 3, 8, 5, tzinfo=UTC),
        datetime(2026, 11, 1, 5, tzinfo=UTC),
    ),
}


def moments_around(change):
    """Instants just before and after a change, and an hour either side (the repeated hour)."""
    return [
        change - timedelta(hours=1) - S,
        change - timedelta(hours=1) + S,
        change - timedelta(minutes=30),
        change - S,
        change,
        change + timedelta(minutes=30),
        change + timedelta(hours=1) - S,
        change + timedelta(hours=1) + S,
    ]


@pytest.mark.parametrize("use_tz", [True, False], ids=["use_tz", "naive"])
@pytest.mark.parametrize("zone", sorted(TRANSITIONS))
@pytest.mark.parametrize("which", [0, 1], ids=["short-day", "long-day"])
def test_impressions_around_a_clock_change(standalone_buffer, zone, use_tz, which):
    post = make_posts(1)[0]
    change = TRANSITIONS[zone][which]
    moments = moments_around(change)
    with override_settings(TIME_ZONE=zone, USE_TZ=use_tz, IMPRESSIONS_HISTORY_DAYS=0):
        expected = {}
        for n, moment in enumerate(moments):
            record_impressions(f"u:{n}", [post.id], now=moment)
            day = moment.astimezone(ZoneInfo(zone)).date()
            expected[day] = expected.get(day, 0) + 1
        flush_pending()  # one flush, a window straddling the change
        day = change.astimezone(ZoneInfo(zone)).date()
        rollup.roll_up(today=day + timedelta(days=2), pace=0)
        assert Post.objects.get(pk=post.pk).impressions == len(moments)
        history = impressions.history([post.id], day - timedelta(days=3), day + timedelta(days=3))
        assert history == {post.id: expected}
        assert rollup_mismatches() == []
        weeks = dict(
            PeriodImpressions.objects.filter(object_id=post.id, period="w").values_list(
                "start", "count"
            )
        )
        assert sum(weeks.values()) == len(moments)
        assert impressions.top_posts(day - timedelta(days=40), day + timedelta(days=1)) == [
            (post.id, len(moments))
        ]


DASHBOARD = "/admin/impressions/dashboard/"


def bars(html, chart_id):
    start = html.index(f'id="chart-{chart_id}"')
    end = html.index("</figure>", start)
    return [
        (date.fromisoformat(day), int(count))
        for day, count in re.findall(
            r'<g class="bar[^"]*" role="img" data-day="([\d-]+)" data-count="(\d+)"',
            html[start:end],
        )
    ]


def top_count(html, name, object_id):
    start = html.index(f'id="top-{name}"')
    table = html[start : html.index("</table>", start)]
    match = re.search(rf'data-object-id="{object_id}"[^>]*>.*?class="number">(\d+)<', table, re.S)
    return int(match[1]) if match else 0


@pytest.mark.parametrize("use_tz", [True, False], ids=["use_tz", "naive"])
@pytest.mark.parametrize("zone", sorted(TRANSITIONS))
@pytest.mark.parametrize("which", [0, 1], ids=["short-day", "long-day"])
@pytest.mark.parametrize("after", [0, 1, 3], ids=["on-the-day", "next-day", "days-later"])
def test_the_dashboard_across_a_clock_change(
    superuser_client, standalone_buffer, monkeypatch, zone, use_tz, which, after
):
    post = make_posts(1)[0]
    change = TRANSITIONS[zone][which]
    z = ZoneInfo(zone)
    change_day = change.astimezone(z).date()
    today = change_day + timedelta(days=after)
    # Every hour from 3 days before the change's day to the end of `today`, one viewer each.
    first = datetime.combine(change_day - timedelta(days=3), datetime.min.time(), z)
    last = datetime.combine(today + timedelta(days=1), datetime.min.time(), z)
    moments, moment = [], first.astimezone(UTC)
    while moment < last.astimezone(UTC):
        moments.append(moment)
        moment += timedelta(hours=1)
    expected = {}
    for moment in moments:
        expected[moment.astimezone(z).date()] = expected.get(moment.astimezone(z).date(), 0) + 1
    # The day of the change is a short or a long one (Lord Howe's: 23.5 or 24.5 hours).
    start = datetime.combine(change_day, datetime.min.time(), z).astimezone(UTC)
    end = datetime.combine(change_day + timedelta(days=1), datetime.min.time(), z).astimezone(UTC)
    hours = (end - start) / timedelta(hours=1)
    assert hours == (23.5 if "Lord_Howe" in zone else 23) if which == 0 else hours > 24
    monkeypatch.setattr(stats, "today", lambda: today)
    with override_settings(TIME_ZONE=zone, USE_TZ=use_tz, IMPRESSIONS_HISTORY_DAYS=0):
        for n, moment in enumerate(moments):
            record_impressions(f"u:{n}", [post.id], now=moment)
        flush_pending()
        rollup.roll_up(today=today, pace=0)
        for key, length in [("7d", 7), ("30d", 30), ("90d", 90), ("today", 1)]:
            html = superuser_client.get(f"{DASHBOARD}?range={key}").content.decode()
            days = bars(html, "site")
            assert [day for day, _ in days] == [
                today - timedelta(days=n) for n in reversed(range(length))
            ], key
            assert dict(days) == {day: expected.get(day, 0) for day, _ in days}, key
            assert top_count(html, "today", post.id) == expected[today]
            week = sum(
                c for d, c in expected.items() if d.isocalendar()[:2] == today.isocalendar()[:2]
            )
            assert top_count(html, "this-week", post.id) == week
            month = sum(
                c for d, c in expected.items() if (d.year, d.month) == (today.year, today.month)
            )
            assert top_count(html, "this-month", post.id) == month
            in_range = sum(c for d, c in expected.items() if d > today - timedelta(days=length))
            assert top_count(html, "in-the-range", post.id) == in_range
        page = superuser_client.get(f"/admin/casusult/post/{post.id}/change/").content.decode()
        days = bars(page, f"object-{post.id}")
        assert len(days) == 30 and days[-1][0] == today
        assert dict(days) == {day: expected.get(day, 0) for day, _ in days}
        assert rollup_mismatches() == []


@pytest.mark.parametrize("use_tz", [True, False], ids=["use_tz", "naive"])
@pytest.mark.parametrize("zone", sorted(TRANSITIONS))
@pytest.mark.parametrize("which", [0, 1], ids=["short-day", "long-day"])
def test_the_last_tenth_of_a_second_of_a_day_flushed_after_midnight_counts_on_that_day(
    standalone_buffer, zone, use_tz, which
):
    """As counting.md says: the day an impression was recorded on, in TIME_ZONE, whenever its
    flush runs, even after the roll-up has moved that day (a late count)."""
    a, b = make_posts(2)
    z = ZoneInfo(zone)
    day = TRANSITIONS[zone][which].astimezone(z).date()
    last = datetime.combine(day + timedelta(days=1), datetime.min.time(), z) - timedelta(
        seconds=0.1
    )
    assert f"{last:%H:%M:%S.%f}" == "23:59:59.900000"
    with override_settings(TIME_ZONE=zone, USE_TZ=use_tz, IMPRESSIONS_HISTORY_DAYS=0):
        record_impressions("u:1", [a.id], now=last.timestamp())
        record_impressions("u:2", [a.id], now=last + timedelta(seconds=0.2))  # 00:00:00.1
        flush_pending()
        rollup.roll_up(today=day + timedelta(days=1), pace=0)  # the day is rolled up
        record_impressions("u:3", [b.id], now=last)
        flush_pending()  # after midnight: a late count of a day rolled up
        assert impressions.history([a.id, b.id], day, day + timedelta(days=1)) == {
            a.id: {day: 1, day + timedelta(days=1): 1},
            b.id: {day: 1},
        }
        assert impressions.top_posts(day, day) == [(a.id, 1), (b.id, 1)]
        assert rollup_mismatches() == []


# New York's night of 1 November 2026, when 01:00-02:00 comes twice (EDT, then EST), in UTC.
FIRST_0158 = datetime(2026, 11, 1, 5, 58, tzinfo=UTC)  # 01:58 EDT
SECOND_0130 = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30 EST
SPRING_0158 = datetime(2026, 3, 8, 6, 58, tzinfo=UTC)  # 01:58 EST, before the gap


@pytest.mark.django_db(transaction=True)  # restoring TIME_ZONE reconfigures the connection
@pytest.mark.parametrize("use_tz", [True, False], ids=["use_tz", "naive"])
@pytest.mark.parametrize("moment", [FIRST_0158, SECOND_0130, SPRING_0158], ids=str)
def test_the_flush_and_the_roll_up_run_a_flush_delay_later_across_a_clock_change(
    settings, standalone_buffer, monkeypatch, use_tz, moment
):
    """The scheduled flush runs IMPRESSIONS_FLUSH_DELAY after the first impression, in real time.
    Under USE_TZ = False, run_after was the naive wall clock plus 5 minutes: at 01:58 EDT, 02:03
    EST, 65 minutes later (the schedule guard lapsed meanwhile and the dashboard said the pending
    impressions had no flush); at 01:30 EST, 01:35 EDT, 55 minutes ago (it ran at once)."""
    url = settings.RQ_REDIS_URL
    queue = redis.Redis.from_url(url)
    queue.flushdb()
    try:
        with override_settings(**rq_settings(url), USE_TZ=use_tz, TIME_ZONE="America/New_York"):
            now = moment if use_tz else datetime.fromtimestamp(moment.timestamp())  # its fold too
            monkeypatch.setattr(timezone, "now", lambda: now)
            tasks.enqueue_flush(delay=conf.FLUSH_DELAY)
            monkeypatch.setattr(tasks, "rollup_needed", lambda: True)
            assert tasks.schedule_rollup()
            assert queue.llen("rq:queue:default") == 0  # none runs at once
            due = [
                score for _, score in queue.zrange("rq:scheduled:default", 0, -1, withscores=True)
            ]
            assert len(due) == conf.FLUSH_PARTS + 1  # the flush's parts, the roll-up
            # The delay, on the RQ Redis's clock (which its scheduler reads; this one is faked).
            seconds, _ = queue.time()
            assert all(
                seconds + conf.FLUSH_DELAY - 2 <= at <= seconds + conf.FLUSH_DELAY + 1 for at in due
            )
    finally:
        queue.flushdb()


@pytest.mark.parametrize("use_tz", [True, False], ids=["use_tz", "naive"])
@pytest.mark.parametrize("moment", [FIRST_0158, SECOND_0130, SPRING_0158], ids=str)
def test_the_next_flush_is_in_5_minutes_across_a_clock_change(monkeypatch, use_tz, moment):
    """At 01:58 EDT a flush due at 01:03 EST was "overdue by 55 min" under USE_TZ = False: the
    naive times were compared by their wall clocks."""
    with override_settings(USE_TZ=use_tz, TIME_ZONE="America/New_York"):
        now = moment if use_tz else datetime.fromtimestamp(moment.timestamp())
        monkeypatch.setattr(timezone, "now", lambda: now)
        monkeypatch.setattr(dashboard, "flush_due", lambda: moment + timedelta(minutes=5))
        shown = dashboard.next_flush(scheduled=True)
        assert (shown["text"], shown["overdue"]) == ("in 5 min", False)
        local = (moment + timedelta(minutes=5)).astimezone(ZoneInfo("America/New_York"))
        assert f"{shown['at']:%H:%M}" == f"{local:%H:%M}"
        monkeypatch.setattr(dashboard, "flush_due", lambda: moment - timedelta(seconds=90))
        assert dashboard.next_flush(scheduled=True)["text"] == "overdue by 90 s"


# The flush ledger under USE_TZ = False: its times are TIME_ZONE's wall clock, which the database
# keeps without the fold (PostgreSQL reads a repeated hour's wall clock as its second pass).
NEW_YORK_CHANGES = {  # UTC instants: a flush's start and end, then the clock 10 s after its end
    # 01:59:50 EDT to 01:00:20 EST: 30 s, not -59 min 30 s.
    "across-the-autumn-change": (datetime(2026, 11, 1, 5, 59, 50, tzinfo=UTC), 30),
    # 01:59:40 to 01:59:55 EDT, then looked at 01:00:05 EST: 10 s ago, not in 59 min 50 s.
    "before-the-autumn-change": (datetime(2026, 11, 1, 5, 59, 40, tzinfo=UTC), 15),
    # 01:30:00 to 01:30:05 EST, the second pass.
    "in-the-repeated-hour": (datetime(2026, 11, 1, 6, 30, tzinfo=UTC), 5),
    # 01:59:50 EST to 03:00:20 EDT: 30 s, not 60 min 30 s.
    "across-the-spring-change": (datetime(2026, 3, 8, 6, 59, 50, tzinfo=UTC), 30),
}


def wall(moment):
    """An instant as USE_TZ = False has it: TIME_ZONE's naive wall clock, with its fold."""
    return datetime.fromtimestamp(moment.timestamp())


def ledger_row(start, end, suffix="00000001", **fields):
    return Flush.objects.create(
        id=f"{start:%Y%m%dT%H%M%S}-{suffix}",
        started_at=wall(start),
        finished_at=None if end is None else wall(end),
        outcome=Flush.Outcome.APPLIED if end else Flush.Outcome.RUNNING,
        **fields,
    )


@pytest.mark.parametrize("case", sorted(NEW_YORK_CHANGES))
def test_a_flush_s_run_time_and_age_across_a_clock_change(superuser_client, monkeypatch, case):
    """The ledger's duration, the dashboard's last flush and "Flush now"'s message subtracted
    naive wall clocks: across New York's autumn change a 30 s flush ran "-3570000 ms", and one
    that had ended 10 s before was "0 s ago" for an hour; across the spring one it ran 60 min 30 s."""
    start, seconds = NEW_YORK_CHANGES[case]
    end = start + timedelta(seconds=seconds)
    with override_settings(USE_TZ=False, TIME_ZONE="America/New_York"):
        monkeypatch.setattr(timezone, "now", lambda: wall(end + timedelta(seconds=10)))
        ledger_row(start, end, impressions_applied=3, posts_updated=1)
        flush = Flush.objects.get()
        shown = f"{seconds:.1f} s"
        assert dashboard.last_flushes()["last_flush"]["duration"] == shown
        assert dashboard.last_flushes()["last_flush"]["lag"] == "10 s"
        assert f"applied to 1 post in {shown}." in flush_now.outcome_of_ledger(flush).message
        page = superuser_client.get("/admin/impressions/flush/").content.decode()
        assert re.search(r'<td class="field-duration">([^<]*)</td>', page)[1] == shown


# (now, [(a running flush's start, closed as an orphan)]), UTC instants.
ORPHANS = {
    # 03:30 EDT, the hour after the spring change: 01:45 EST was 45 min ago, 01:20 EST 70 min.
    "spring": (
        datetime(2026, 3, 8, 7, 30, tzinfo=UTC),
        [
            (datetime(2026, 3, 8, 6, 45, tzinfo=UTC), False),
            (datetime(2026, 3, 8, 6, 20, tzinfo=UTC), True),
        ],
    ),
    # 01:10 EST, the second pass: 01:20 EDT was 50 min ago, 01:05 EDT 65 min.
    "autumn": (
        datetime(2026, 11, 1, 6, 10, tzinfo=UTC),
        [
            (datetime(2026, 11, 1, 5, 20, tzinfo=UTC), False),
            (datetime(2026, 11, 1, 5, 5, tzinfo=UTC), True),
        ],
    ),
}


@pytest.mark.parametrize("change", sorted(ORPHANS))
def test_a_running_flush_is_an_orphan_an_hour_after_its_start_across_a_clock_change(
    monkeypatch, change
):
    """close_orphans' cutoff was the naive wall clock minus an hour: in the hour after the spring
    change, 02:xx, which the database reads as EST, that is now: a flush in progress whose
    snapshots another flush did not see (taken after it looked) was marked failed at once."""
    now, rows = ORPHANS[change]
    with override_settings(USE_TZ=False, TIME_ZONE="America/New_York"):
        monkeypatch.setattr(timezone, "now", lambda: wall(now))
        for n, (start, _) in enumerate(rows):
            ledger_row(start, None, suffix=f"0000000{n}")
        expected = sum(closed for _, closed in rows)
        assert ledger.close_orphans(set()) == expected
        outcomes = dict(Flush.objects.values_list("id", "outcome"))
        assert [
            outcomes[f"{start:%Y%m%dT%H%M%S}-0000000{n}"] for n, (start, _) in enumerate(rows)
        ] == [Flush.Outcome.FAILED if closed else Flush.Outcome.RUNNING for _, closed in rows]


@pytest.mark.parametrize("earlier", [False, True], ids=["its-flush", "an-earlier-flush"])
def test_flush_now_finds_its_flush_in_the_ledger_across_the_autumn_change(
    superuser_client, standalone_buffer, monkeypatch, earlier
):
    """A backend that keeps no results (SQS, Dummy): "Flush now" looks for the first flush that
    started after the button was pressed, comparing naive wall clocks. Pressed at 01:59:58 EDT, the
    flush that ran at 01:00:02 EST was not found (the page waited an hour, asking whether a worker
    ran); pressed at 01:00:05 EST, a flush of 01:30 EDT, half an hour before, was taken for it."""
    monkeypatch.setattr(flush_now, "WAIT_IN_REQUEST", 0)  # the Dummy backend never runs it
    clock = {}
    monkeypatch.setattr(timezone, "now", lambda: wall(clock["now"]))
    with override_settings(USE_TZ=False, TIME_ZONE="America/New_York"):
        if earlier:
            old = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
            ledger_row(old, old + S, impressions_applied=7, posts_updated=7)
            pressed = datetime(2026, 11, 1, 6, 0, 5, tzinfo=UTC)
        else:
            pressed = datetime(2026, 11, 1, 5, 59, 58, tzinfo=UTC)
        clock["now"] = pressed
        response = superuser_client.post("/admin/impressions/flush/flush-now/", {"next": "/admin/"})
        waiting_url = response["Location"]
        assert "/flush-now/" in waiting_url, "the flush asked for has not run yet"
        clock["now"] = pressed + 3 * S
        waiting = superuser_client.get(waiting_url)
        assert waiting.status_code == 200, "the flush asked for has not run yet"
        assert waiting.context["waited"] == "3 s"
        ran = datetime(2026, 11, 1, 6, 0, 10, tzinfo=UTC)  # 01:00:10 EST
        ledger_row(ran, ran + S, suffix="0000000a", impressions_applied=1, posts_updated=1)
        clock["now"] = ran + 2 * S
        done = superuser_client.get(waiting_url)
        assert done.status_code == 302 and done["Location"] == "/admin/"
        message = str(next(iter(get_messages(done.wsgi_request))))
        assert "1 impression applied to 1 post in 1.0 s." in message


@pytest.mark.parametrize("use_tz", [True, False], ids=["use_tz", "naive"])
@pytest.mark.parametrize("since", ["0001-01-01T00:00:00", "9999-12-31T23:59:59-05:00"])
def test_a_since_out_of_utc_s_range_is_refused(superuser_client, use_tz, since):
    """The waiting page reads `since` in UTC: Tokyo's 0001-01-01 00:00 is before year 1 there."""
    with override_settings(USE_TZ=use_tz, TIME_ZONE="Asia/Tokyo"):
        url = f"/admin/impressions/flush/flush-now/abc/?{urlencode({'since': since})}"
        assert superuser_client.get(url).status_code == 400


# Rows another build wrote (its ids are not this build's), at the ends of datetime's range: under
# USE_TZ = False their wall clocks are in range, their UTC instants are not.
EDGES = {
    "Asia/Tokyo": datetime(1, 1, 1, 0, 0),  # 0000-12-31 15:00 UTC
    "America/New_York": datetime(9999, 12, 31, 23, 0),  # 10000-01-01 04:00 UTC
}


@pytest.mark.parametrize("zone", sorted(EDGES))
def test_a_row_at_the_end_of_time_is_shown(superuser_client, standalone_buffer, zone):
    """The ledger read in UTC raised OverflowError (a 500 of the ledger, the dashboard and Flush
    now's waiting page) on a row whose naive time is within a day of year 1 or 9999; the wall
    clocks subtracted as they were did not."""
    start = EDGES[zone]
    with override_settings(USE_TZ=False, TIME_ZONE=zone):
        Flush.objects.create(
            id="v2:another-build",
            started_at=start,
            finished_at=start + 30 * S,
            outcome=Flush.Outcome.APPLIED,
        )
        page = superuser_client.get("/admin/impressions/flush/")
        assert page.status_code == 200
        duration = re.search(r'<td class="field-duration">([^<]*)</td>', page.content.decode())[1]
        assert duration == "30.0 s"
        assert superuser_client.get(DASHBOARD).status_code == 200
        since = urlencode({"since": "2026-11-01T06:00:00+00:00"})
        waiting = superuser_client.get(f"/admin/impressions/flush/flush-now/abc/?{since}")
        assert waiting.status_code in (200, 302)  # waiting, or taking that row for its flush
