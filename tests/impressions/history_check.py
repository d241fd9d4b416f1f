"""What the flush's history must satisfy (impressions/stats.py's contract), read back from the tables."""

from collections import Counter

from impressions import periods
from impressions.models import (
    DailyImpressions,
    HistoryRollup,
    PeriodImpressions,
    SiteDailyImpressions,
)


def history_sums(object_ids):
    """{object id: sum of its daily rows}, 0 for an object without history."""
    sums = dict.fromkeys(object_ids, 0)
    for object_id, count in DailyImpressions.objects.filter(object_id__in=sums).values_list(
        "object_id", "count"
    ):
        sums[object_id] += count
    return sums


def daily_counts(object_ids=None):
    """{(object id, day): count} of the daily rows (of `object_ids`, if given)."""
    rows = DailyImpressions.objects.all()
    if object_ids is not None:
        rows = rows.filter(object_id__in=list(object_ids))
    return {(o, d): n for o, d, n in rows.values_list("object_id", "day", "count")}


def rollup_mismatches():
    """Week, month and site rows that are not the sums of the daily rows: [] when all agree.

    The week and month rows hold the days up to HistoryRollup.rolled_through.
    """
    rolled = HistoryRollup.objects.filter(id=1).values_list("rolled_through", flat=True).first()
    rollups, site = Counter(), Counter()
    for (object_id, day), count in daily_counts().items():
        assert count > 0, (object_id, day)
        site[day] += count
        if rolled is None or day > rolled:
            continue
        rollups[periods.WEEK, periods.week_of(day), object_id] += count
        rollups[periods.MONTH, periods.month_of(day), object_id] += count
    stored = Counter(
        {
            (p, s, o): n
            for p, s, o, n in PeriodImpressions.objects.values_list(
                "period", "start", "object_id", "count"
            )
        }
    )
    stored_site = Counter(dict(SiteDailyImpressions.objects.values_list("day", "count")))
    mismatches = [
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
