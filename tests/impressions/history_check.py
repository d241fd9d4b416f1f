"""What the flush's history must satisfy (impressions/stats.py's contract), read back from the tables."""

from collections import Counter

from impressions import periods, stats
from impressions.models import (
    DailyImpressions,
    HistoryRollup,
    OpenDailyImpressions,
    OpenDayLeaders,
    PeriodImpressions,
    SiteDailyImpressions,
)


def history_sums(object_ids):
    """{object id: sum of its daily rows, ended and open days}, 0 for an object without history."""
    sums = dict.fromkeys(object_ids, 0)
    for (object_id, _), count in daily_counts(sums).items():
        sums[object_id] += count
    return sums


def daily_counts(object_ids=None):
    """{(object id, day): count} of the daily rows, ended and open days (of `object_ids`, if given).

    A (object, day) in both tables fails: a day's rows are in exactly one of them.
    """
    counts = {}
    for model in (DailyImpressions, OpenDailyImpressions):
        rows = model.objects.all()
        if object_ids is not None:
            rows = rows.filter(object_id__in=list(object_ids))
        for object_id, day, count in rows.values_list("object_id", "day", "count"):
            assert (object_id, day) not in counts, f"{object_id} on {day} in both tables"
            counts[object_id, day] = count
    return counts


def stored_days():
    """The days that have daily rows, ended or open."""
    return {day for _, day in daily_counts()}


def rollup_state():
    return HistoryRollup.objects.filter(id=1).first() or HistoryRollup()


def open_days_misplaced():
    """Rows on the wrong side of the roll-up: open rows it has rolled up, daily rows it has not."""
    state = rollup_state()
    open_rows = OpenDailyImpressions.objects.values_list("object_id", "day")
    daily_rows = DailyImpressions.objects.values_list("object_id", "day")
    return [(o, d) for o, d in open_rows if state.is_rolled(d, o)] + [
        (o, d) for o, d in daily_rows if not state.is_rolled(d, o)
    ]


def rollup_mismatches():
    """Week, month and site rows that are not the sums of the daily rows: [] when all agree.

    The week and month rows hold the rolled-up daily rows (HistoryRollup.is_rolled) whose week or
    month starts on or after the oldest kept day.
    """
    state = rollup_state()
    oldest = stats.oldest_kept_day()
    rollups, site = Counter(), Counter()
    for (object_id, day), count in daily_counts().items():
        assert count > 0, (object_id, day)
        site[day] += count
        if not state.is_rolled(day, object_id):
            continue
        for key in (
            (periods.WEEK, periods.week_of(day), object_id),
            (periods.MONTH, periods.month_of(day), object_id),
        ):
            if oldest is None or key[1] >= oldest:
                rollups[key] += count
    stored = Counter(
        {
            (p, s, o): n
            for p, s, o, n in PeriodImpressions.objects.values_list(
                "period", "start", "object_id", "count"
            )
        }
    )
    stored_site = Counter(dict(SiteDailyImpressions.objects.values_list("day", "count")))
    mismatches = [("misplaced", row) for row in open_days_misplaced()]
    mismatches += [
        (key, stored.get(key), rollups.get(key))
        for key in sorted(set(rollups) | set(stored))
        if stored.get(key) != rollups.get(key)
    ]
    mismatches += [
        (day, stored_site.get(day), site.get(day))
        for day in sorted(set(site) | set(stored_site))
        if stored_site.get(day) != site.get(day)
    ]
    return mismatches


def leaders_mismatches():
    """Days not rolled up whose leaders' top OpenDayLeaders.LEADERS is not the top of the day's
    rows (open, and moved ones of the day being rolled), counts included: [] when all agree."""
    state = rollup_state()
    limit = OpenDayLeaders.LEADERS
    by_day = {}
    for (object_id, day), count in daily_counts().items():
        if state.rolled_through is None or day > state.rolled_through:
            by_day.setdefault(day, []).append((object_id, count))
    mismatches = []
    for day in sorted(set(by_day) | set(OpenDayLeaders.objects.values_list("day", flat=True))):
        expected = sorted(by_day.get(day, []), key=lambda row: (-row[1], row[0]))[:limit]
        leaders = OpenDayLeaders.objects.filter(day=day).order_by("-count", "object_id")
        stored = list(leaders.values_list("object_id", "count")[:limit])
        if stored != expected:
            mismatches.append((day, stored, expected))
    return mismatches
