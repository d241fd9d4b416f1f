"""The history's write side: per-day upserts inside the flush's transaction, and pruning.

The flush calls add_days() once per batch, after the batch's totals UPDATE, with the rows of the
objects that UPDATE found, and add_site_days() once per transaction, last. So every history row of
an object is written by a transaction that already holds that object's row lock (taken in id
order), and the few site rows, which every flush touches, are locked last, in day order: two
flushes at once wait on each other but cannot deadlock. The contract is in stats.py's docstring.
"""

from django.db import connection
from django.db.models import F

from . import periods, stats
from .arrays import bigint_array_literal, date_array_literal
from .models import DailyImpressions, PeriodImpressions, SiteDailyImpressions


def add_days(rows):
    """Add [(object id, day, count), …] (no (object, day) twice) to the daily, week and month rows."""
    if not rows:
        return
    if connection.vendor == "postgresql":
        add_days_postgresql(rows)
    else:
        add_days_portable(rows)


def add_site_days(counts):
    """Add {day: count} to the site-wide rows."""
    if not counts:
        return
    if connection.vendor == "postgresql":
        add_site_days_postgresql(counts)
    else:
        add_site_days_portable(counts)


def add_days_postgresql(rows):
    """Two statements: the daily upsert, then the week and month upsert, from the same arrays."""
    ids, days, counts = zip(*rows, strict=True)
    arrays = [bigint_array_literal(ids), date_array_literal(days), bigint_array_literal(counts)]
    daily, period = table(DailyImpressions), table(PeriodImpressions)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {daily} AS h (object_id, day, count)"
            " SELECT * FROM unnest(%s::bigint[], %s::date[], %s::bigint[])"
            " ON CONFLICT (object_id, day) DO UPDATE SET count = h.count + EXCLUDED.count",
            arrays,
        )
        # Days of one object in the same week or month add up first: ON CONFLICT may touch a row
        # once per statement. The week starts on the ISO Monday, the month on the 1st (as
        # periods.week_of/month_of), in plain date arithmetic: no session time zone involved.
        cursor.execute(
            f"INSERT INTO {period} AS h (period, start, object_id, count)"
            " SELECT p.period, p.start, d.id, sum(d.n)"
            " FROM unnest(%s::bigint[], %s::date[], %s::bigint[]) AS d(id, day, n)"
            " CROSS JOIN LATERAL (VALUES"
            "   ('w', d.day - (extract(isodow FROM d.day)::int - 1)),"
            "   ('m', d.day - (extract(day FROM d.day)::int - 1))"
            " ) AS p(period, start)"
            " GROUP BY p.period, p.start, d.id"
            " ON CONFLICT (period, start, object_id) DO UPDATE SET count = h.count + EXCLUDED.count",
            arrays,
        )


def add_site_days_postgresql(counts):
    days = sorted(counts)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table(SiteDailyImpressions)} AS h (day, count)"
            " SELECT * FROM unnest(%s::date[], %s::bigint[]) ORDER BY 1"
            " ON CONFLICT (day) DO UPDATE SET count = h.count + EXCLUDED.count",
            [date_array_literal(days), bigint_array_literal(counts[day] for day in days)],
        )


def add_days_portable(rows):
    add_portable(DailyImpressions, ("object_id", "day"), {(o, d): n for o, d, n in rows})
    rollups = {}
    for object_id, day, count in rows:
        for key in (
            (periods.WEEK, periods.week_of(day), object_id),
            (periods.MONTH, periods.month_of(day), object_id),
        ):
            rollups[key] = rollups.get(key, 0) + count
    add_portable(PeriodImpressions, ("period", "start", "object_id"), rollups)


def add_site_days_portable(counts):
    add_portable(SiteDailyImpressions, ("day",), {(day,): n for day, n in counts.items()})


def add_portable(model, key_fields, counts):
    """Any database: add {key tuple: count}, updating the keys that exist and inserting the rest.

    Run inside the flush's transaction; on a database that lets two writers in at once, a key two
    flushes both insert fails one of them, which leaves its snapshot for the next flush.
    """
    lookups = {
        f"{name}__in": sorted({key[i] for key in counts}) for i, name in enumerate(key_fields)
    }
    existing = set(model.objects.filter(**lookups).values_list(*key_fields)) & set(counts)
    for key in sorted(existing):
        model.objects.filter(**dict(zip(key_fields, key, strict=True))).update(
            count=F("count") + counts[key]
        )
    model.objects.bulk_create(
        model(**dict(zip(key_fields, key, strict=True)), count=count)
        for key, count in sorted(counts.items())
        if key not in existing
    )


def prune(on=None):
    """Delete the history older than IMPRESSIONS_HISTORY_DAYS (stats.oldest_kept_day); returns rows."""
    oldest = stats.oldest_kept_day(on)
    if oldest is None:
        return 0
    deleted = 0
    for rows in (
        DailyImpressions.objects.filter(day__lt=oldest),
        # Both periods named: the primary key (period, start, …) then serves the range.
        PeriodImpressions.objects.filter(
            period__in=[periods.WEEK, periods.MONTH], start__lt=oldest
        ),
        SiteDailyImpressions.objects.filter(day__lt=oldest),
    ):
        deleted += rows.delete()[0]
    return deleted


def table(model):
    return connection.ops.quote_name(model._meta.db_table)
