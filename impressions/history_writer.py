"""The history's write side: per-day upserts inside the flush's transaction, and pruning.

The flush calls begin() first (after its ledger row), add_days() once per batch, after the batch's
totals UPDATE, with the rows of the objects that UPDATE found, and add_site_days() once per
transaction, last. So every history row of an object is written by a transaction that already
holds that object's row lock (taken in id order), and the few site rows, which every flush
touches, are locked last, in day order: two flushes at once wait on each other but cannot
deadlock. The contract is in stats.py's docstring.

Week and month rows are not written per flush: a flush adds to the open days' rows only (today's,
in a table without a count index, updated in place), and the first flush of a day rolls the ended
days up: it moves their rows to the daily table, which has the count index, and adds them to the
week and month rows, once a day. That is what keeps the history's cost near that of the totals.
Only a count for a day already rolled up (late, or recorded with an old `now=`) goes to its daily,
week and month rows at once.
"""

from datetime import timedelta

from django.db import connection
from django.db.models import F

from . import periods, stats
from .arrays import bigint_array_literal, date_array_literal
from .models import (
    DailyImpressions,
    HistoryRollup,
    OpenDailyImpressions,
    PeriodImpressions,
    SiteDailyImpressions,
)


def begin(today):
    """Lock the rollup row, roll up the days before `today` if not done; returns rolled_through.

    A shared lock when the ended days are rolled up already (every flush but the first of a day),
    so flushes do not wait on each other here; an exclusive one, which waits for the flushes in
    progress, to roll up: no flush is adding to a day while it is rolled up. Never upgraded from
    shared to exclusive (two flushes doing that would deadlock).
    """
    HistoryRollup.objects.bulk_create([HistoryRollup(id=1)], ignore_conflicts=True)
    through = today - timedelta(days=1)
    rolled = HistoryRollup.objects.get(id=1).rolled_through
    if rolled is not None and rolled >= through:
        return locked_rolled_through(share=True)
    rolled = locked_rolled_through(share=False)
    if rolled is None or rolled < through:
        roll_up(through)
        HistoryRollup.objects.filter(id=1).update(rolled_through=through)
        rolled = through
    return rolled


def locked_rolled_through(share):
    if connection.vendor != "postgresql":
        return HistoryRollup.objects.select_for_update().get(id=1).rolled_through
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT rolled_through FROM {table(HistoryRollup)} WHERE id = 1"
            + (" FOR SHARE" if share else " FOR UPDATE")
        )
        return cursor.fetchone()[0]


def roll_up(through):
    """Move the open days up to `through` to the daily rows and add them to the week and month rows."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # One statement: the rows deleted from the open table are the rows inserted in the
            # daily table and summed into the rollups, whatever their days.
            cursor.execute(
                f"WITH moved AS (DELETE FROM {table(OpenDailyImpressions)} WHERE day <= %s"
                " RETURNING object_id, day, count),"
                f" daily AS (INSERT INTO {table(DailyImpressions)} AS h (object_id, day, count)"
                " SELECT * FROM moved ORDER BY object_id, day"
                " ON CONFLICT (object_id, day) DO UPDATE SET count = h.count + EXCLUDED.count)"
                f" INSERT INTO {table(PeriodImpressions)} AS h (period, start, object_id, count)"
                " SELECT p.period, p.start, d.object_id, sum(d.count) FROM moved d"
                f" CROSS JOIN LATERAL ({PERIOD_STARTS}) AS p(period, start)"
                " GROUP BY p.period, p.start, d.object_id"
                " ON CONFLICT (period, start, object_id) DO UPDATE SET count = h.count + EXCLUDED.count",
                [through],
            )
        return
    rows = OpenDailyImpressions.objects.filter(day__lte=through)
    moved = list(rows.values_list("object_id", "day", "count"))
    add_portable(DailyImpressions, ("object_id", "day"), {(o, d): n for o, d, n in moved})
    add_periods_portable(moved)
    rows.delete()


# The week starts on the ISO Monday, the month on the 1st (as periods.week_of/month_of), in plain
# date arithmetic: no session time zone involved.
PERIOD_STARTS = (
    "VALUES ('w', d.day - (extract(isodow FROM d.day)::int - 1)),"
    " ('m', d.day - (extract(day FROM d.day)::int - 1))"
)


def add_days(rows, rolled_through=None, arrays=None):
    """Add [(object id, day, count), …] (in (object, day) order, no pair twice) to the history:
    days after `rolled_through` (None: every day) to the open rows, the others (late) to the daily,
    week and month rows.

    `arrays`: the batch's BatchArrays when `rows` are exactly its totals (one row per object and
    none dropped), reused if the rows are all on one day.
    """
    if not rows:
        return
    days = {row[1] for row in rows}
    late = []
    if rolled_through is not None and min(days) <= rolled_through:
        late = [row for row in rows if row[1] <= rolled_through]
        rows = [row for row in rows if row[1] > rolled_through]
        arrays = None
    if connection.vendor == "postgresql":
        add_days_postgresql(rows, late, arrays if len(days) == 1 else None)
    else:
        add_days_portable(rows, late)


def add_site_days(counts):
    """Add {day: count} to the site-wide rows."""
    if not counts:
        return
    if connection.vendor == "postgresql":
        add_site_days_postgresql(counts)
    else:
        add_site_days_portable(counts)


def add_days_postgresql(rows, late, arrays=None):
    """The open days' upsert (from the totals' arrays when one day's); then the late rows'."""
    with connection.cursor() as cursor:
        if arrays is not None:
            cursor.execute(
                f"INSERT INTO {table(OpenDailyImpressions)} AS h (object_id, day, count)"
                " SELECT d.id, %s::date, d.n FROM unnest(%s::bigint[], %s::bigint[]) AS d(id, n)"
                " ON CONFLICT (object_id, day) DO UPDATE SET count = h.count + EXCLUDED.count",
                [rows[0][1], arrays.ids, arrays.counts],
            )
        elif rows:
            upsert_days(cursor, OpenDailyImpressions, rows)
        if not late:
            return
        upsert_days(cursor, DailyImpressions, late)
        # Days of one object in the same week or month add up first: ON CONFLICT may touch a row
        # once per statement.
        cursor.execute(
            f"INSERT INTO {table(PeriodImpressions)} AS h (period, start, object_id, count)"
            " SELECT p.period, p.start, d.object_id, sum(d.count)"
            " FROM unnest(%s::bigint[], %s::date[], %s::bigint[]) AS d(object_id, day, count)"
            f" CROSS JOIN LATERAL ({PERIOD_STARTS}) AS p(period, start)"
            " GROUP BY p.period, p.start, d.object_id"
            " ON CONFLICT (period, start, object_id) DO UPDATE SET count = h.count + EXCLUDED.count",
            arrays_of(late),
        )


def upsert_days(cursor, model, rows):
    cursor.execute(
        f"INSERT INTO {table(model)} AS h (object_id, day, count)"
        " SELECT * FROM unnest(%s::bigint[], %s::date[], %s::bigint[])"
        " ON CONFLICT (object_id, day) DO UPDATE SET count = h.count + EXCLUDED.count",
        arrays_of(rows),
    )


def arrays_of(rows):
    ids, days, counts = zip(*rows, strict=True)
    return [bigint_array_literal(ids), date_array_literal(days), bigint_array_literal(counts)]


def add_site_days_postgresql(counts):
    days = sorted(counts)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table(SiteDailyImpressions)} AS h (day, count)"
            " SELECT * FROM unnest(%s::date[], %s::bigint[]) ORDER BY 1"
            " ON CONFLICT (day) DO UPDATE SET count = h.count + EXCLUDED.count",
            [date_array_literal(days), bigint_array_literal(counts[day] for day in days)],
        )


def add_days_portable(rows, late, arrays=None):
    if rows:
        add_portable(OpenDailyImpressions, ("object_id", "day"), {(o, d): n for o, d, n in rows})
    if late:
        add_portable(DailyImpressions, ("object_id", "day"), {(o, d): n for o, d, n in late})
        add_periods_portable(late)


def add_periods_portable(rows):
    rollups = {}
    for object_id, day, count in rows:
        for key in (
            (periods.WEEK, periods.week_of(day), object_id),
            (periods.MONTH, periods.month_of(day), object_id),
        ):
            rollups[key] = rollups.get(key, 0) + count
    if rollups:
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
        OpenDailyImpressions.objects.filter(day__lt=oldest),
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
