"""Writes history rows as the flush's contract says (impressions/stats.py), for read-side tests."""

from collections import Counter

from django.db.models import F

from impressions import periods
from impressions.models import (
    DailyImpressions,
    HistoryRollup,
    PeriodImpressions,
    SiteDailyImpressions,
)


def add_impressions(object_id, day, count):
    """`count` impressions of `object_id` on `day`: the daily row, its week and month (rolled up), the site."""
    _add(DailyImpressions, {"object_id": object_id, "day": day}, count)
    for period, start in (
        (periods.WEEK, periods.week_of(day)),
        (periods.MONTH, periods.month_of(day)),
    ):
        _add(PeriodImpressions, {"period": period, "start": start, "object_id": object_id}, count)
    _add(SiteDailyImpressions, {"day": day}, count)
    rolled_up_through(day)


def rolled_up_through(day):
    """Mark the week and month rows as holding every day up to `day` (as these helpers write them)."""
    marker, _ = HistoryRollup.objects.get_or_create(id=1)
    if marker.rolled_through is None or marker.rolled_through < day:
        marker.rolled_through = day
        marker.save()


def _add(model, key, count):
    updated = model.objects.filter(**key).update(count=F("count") + count)
    if not updated:
        model.objects.create(**key, count=count)


def add_many(rows):
    """Many (object_id, day, count) into empty history tables, in three bulk inserts."""
    daily, rollups, site = Counter(), Counter(), Counter()
    for object_id, day, count in rows:
        daily[object_id, day] += count
        rollups[periods.WEEK, periods.week_of(day), object_id] += count
        rollups[periods.MONTH, periods.month_of(day), object_id] += count
        site[day] += count
    DailyImpressions.objects.bulk_create(
        DailyImpressions(object_id=o, day=d, count=n) for (o, d), n in daily.items()
    )
    PeriodImpressions.objects.bulk_create(
        PeriodImpressions(period=p, start=s, object_id=o, count=n)
        for (p, s, o), n in rollups.items()
    )
    SiteDailyImpressions.objects.bulk_create(
        SiteDailyImpressions(day=d, count=n) for d, n in site.items()
    )
    if site:
        rolled_up_through(max(site))
