"""The impression history's read side: per-day counts of counted objects by range, top, CSV.

Named stats, not history: the package re-exports the function `history` as `impressions.history`,
and a submodule of the same name would shadow it once imported.

Read API (dates are `datetime.date`, ranges include both ends, days are TIME_ZONE days):

- `history(post_ids, start, end)` -> `{post_id: {day: count}}`, every asked id present, days
  without impressions left out;
- `top_posts(start, end, limit=10)` -> `[(post_id, count), …]`, highest first, ties by id,
  only objects with impressions, counted from the oldest kept day on (`oldest_kept_day()`);
- `daily_totals(start, end)` -> `{day: count}` site-wide, days without impressions left out;
- `write_csv(out, post_ids, start, end)`: `post_id,day,impressions`, one line per post and day.

Write contract (the flush keeps it, in each batch's transaction with the totals and the ledger;
the daily roll-up, impressions/rollup.py, moves the rows):

| table (model)                                   | key                        | per batch                |
| ----------------------------------------------- | -------------------------- | ------------------------ |
| `impressions_daily_open` (OpenDailyImpressions) | (object_id, day)           | + count of (object, day) |
|                                                 |                            |   not rolled up          |
| `impressions_daily` (DailyImpressions)          | (day, object_id)           | + count of (object, day) |
|                                                 |                            |   rolled up (late)       |
| `impressions_period` (PeriodImpressions)        | (period, start, object_id) | rolled up only: + same   |
|                                                 |                            |   count to ('w', week_of)|
|                                                 |                            |   and ('m', month_of)    |
| `impressions_rollup` (HistoryRollup)            | id = 1                     | read: where a row goes   |
| `impressions_site_daily` (SiteDailyImpressions) | (day)                      | + sum of the day's counts|

Each is `INSERT … ON CONFLICT (key) DO UPDATE SET count = <table>.count + EXCLUDED.count`, one
statement per batch and table, the site rows last (impressions/history_writer.py says why), with
`day` the TIME_ZONE date the impression was recorded; days before `oldest_kept_day()` get none.
"Rolled up" is HistoryRollup.is_rolled(day, object_id): a day up to rolled_through, or an object
the roll-up already moved of the day it is rolling. The roll-up moves a day's open rows, in
batches by object, to the daily table and adds them to the week and month rows, then moves
rolled_through to that day. Every count is > 0. Invariants, which the tests of the writer assert:
every (object, day) row is in exactly one of the two daily tables, the open one for what is not
rolled up; an object's daily and open rows sum to what was added to its total; a week or month row
is the sum of that object's rolled-up daily rows in it; a site row is the sum of the daily and open
rows of its day. Reads of a week or month add its days not rolled up from the open rows, in one
snapshot. Pruning (IMPRESSIONS_HISTORY_DAYS, 0 keeps all, by the roll-up task): delete daily, open
and site rows with day < `oldest_kept_day()` and period rows with start < it; `top_posts` never
reads a period starting before it, so a half-pruned period is never used.
"""

import csv
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from . import periods
from .conf import conf
from .models import (
    DailyImpressions,
    HistoryRollup,
    OpenDailyImpressions,
    OpenDayLeaders,
    PeriodImpressions,
    SiteDailyImpressions,
)

# The top-of-a-range search reads this many rows of each piece first, four times more each round.
FIRST_DEPTH = 20
# history(): at most this many (day, object) lookups of the daily rows' key; more read the range.
HISTORY_KEYS = 200_000
# Past this many candidates, one GROUP BY over the whole range is cheaper than more rounds.
MAX_CANDIDATES = 5000
# top_in's periods: the first day of the one holding a day.
TOP_IN_STARTS = {
    periods.DAY: lambda day: day,
    periods.WEEK: periods.week_of,
    periods.MONTH: periods.month_of,
}
# True inside the outermost reading() in progress.
_reading = ContextVar("impressions_reading", default=False)


def today():
    """Today in TIME_ZONE: the day the recorder gives an impression made now."""
    return periods.day_of(timezone.now())


def oldest_kept_day(on=None):
    """The first day IMPRESSIONS_HISTORY_DAYS keeps (None: everything is kept)."""
    if not conf.HISTORY_DAYS:
        return None
    return (on or today()) - timedelta(days=conf.HISTORY_DAYS - 1)


def check_range(start, end):
    """Raise TypeError/ValueError unless start and end are dates (not datetimes), start <= end."""
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, date) or isinstance(value, datetime):
            raise TypeError(f"{name} must be a datetime.date, not {type(value).__name__}")
    if start > end:
        raise ValueError(f"start {start} is after end {end}")


def history(post_ids, start, end):
    """{post_id: {day: count}} for start..end inclusive; days without impressions left out."""
    check_range(start, end)
    ids = [int(post_id) for post_id in post_ids]
    result = {post_id: {} for post_id in ids}
    if not ids:
        return result
    with reading():
        rows = [*ended_days(ids, start, end), *rows_in_range(OpenDailyImpressions, ids, start, end)]
    for object_id, day, count in sorted(rows):
        days = result[object_id]
        days[day] = days.get(day, 0) + count
    return result


def ended_days(ids, start, end):
    """[(object id, day, count)] of the daily rows of `ids` in start..end.

    On PostgreSQL their key is (day, object_id) (migration 0010): each (day, object) asked is a
    lookup of it (with an IN list of each, the planner read every object's rows of those days
    through the count index); past HISTORY_KEYS lookups, the range. Elsewhere the key is object
    first.
    """
    ids = sorted(set(ids))  # an id asked twice is looked up once, as an IN list reads it
    lookups = ((end - start).days + 1) * len(ids)
    if connection.vendor != "postgresql" or lookups > HISTORY_KEYS:
        return rows_in_range(DailyImpressions, ids, start, end)
    with connection.cursor() as cursor:
        cursor.execute(
            # LATERAL … OFFSET 0, never flattened into a join: a lookup each, where the planner
            # chose to hash every object's rows of the days (90 days of 1,000 objects: 7.8 s).
            "SELECT o.object_id, d.day, h.count FROM unnest(%s::date[]) AS d(day)"
            " CROSS JOIN unnest(%s::bigint[]) AS o(object_id) CROSS JOIN LATERAL (SELECT count"
            f" FROM {connection.ops.quote_name(DailyImpressions._meta.db_table)}"
            " WHERE day = d.day AND object_id = o.object_id OFFSET 0) AS h",
            [periods.days(start, end), ids],
        )
        return cursor.fetchall()


def rows_in_range(model, ids, start, end):
    rows = model.objects.filter(object_id__in=ids, day__range=(start, end))
    return list(rows.values_list("object_id", "day", "count"))


def daily_totals(start, end):
    """{day: impressions site-wide} for start..end inclusive; days without impressions left out."""
    check_range(start, end)
    rows = SiteDailyImpressions.objects.filter(day__range=(start, end), count__gt=0)
    return dict(rows.order_by("day").values_list("day", "count"))


def top_posts(start, end, limit=10):
    """[(post_id, count), …] with the most impressions in start..end, highest first, ties by id."""
    check_range(start, end)
    if limit < 1:
        return []
    pieces = kept_cover(start, end)
    return top_of_pieces(pieces, limit) if pieces else []


def kept_cover(start, end):
    """periods.cover of start..end from the oldest kept day to today; [] when it holds none."""
    oldest = oldest_kept_day()
    if oldest is not None and start < oldest:
        start = oldest
    end = min(end, today())  # no day after today has impressions (and date.max has no next month)
    return periods.cover(start, end)


def top_in(period, day, limit=10):
    """The top of the day, ISO week or calendar month (periods.DAY/WEEK/MONTH) holding `day`."""
    check_range(day, day)
    if period not in TOP_IN_STARTS:
        raise ValueError(
            f"period must be periods.DAY, WEEK or MONTH ('d', 'w', 'm'), not {period!r}"
        )
    start = TOP_IN_STARTS[period](day)
    return top_of_pieces([periods.Piece(period, start)], limit) if limit >= 1 else []


def top_of_pieces(pieces, limit):
    with reading():
        pieces = readable(pieces)
        if not pieces:
            return []
        if len(pieces) == 1:
            return piece_top(pieces[0], limit)
        return threshold_top(pieces, limit)


@contextmanager
def reading():
    """Reads of the history that must agree, in one snapshot.

    On PostgreSQL, outside a transaction, the rollup marker and the rows are read in one
    REPEATABLE READ snapshot: otherwise a roll-up committing between two of the reads could
    count its days twice, or miss them. Nested calls join the outermost one (the dashboard
    reads its four top lists in one).
    """
    if _reading.get():
        yield
        return
    token = _reading.set(True)
    try:
        if connection.vendor != "postgresql" or connection.in_atomic_block:
            yield
            return
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield
    finally:
        _reading.reset(token)


def readable(pieces):
    """The pieces as stored (HistoryRollup says where): a day up to rolled_through is a daily
    piece; a later day is an open day (its open rows, and its rows the roll-up has moved if it is
    the day being rolled); a week or month not rolled up to its end is its rollup row (if it holds
    any of its days) and the open rows of its later days (only days up to the latest that has
    rows)."""
    state = HistoryRollup.objects.filter(id=1).first() or HistoryRollup()
    rolled = state.rolled_through
    if rolled is not None and all(piece.end <= rolled for piece in pieces):
        return pieces
    # The last day with rows in the week and month rows: rolled_through, or the rolling day once
    # it has moved rows if it is later. A day rolled up already can be rolled again (open rows a
    # restored backup or an old build's flush left there): it is read as any day up to
    # rolled_through, and the later days' rollup rows still count (taken as the last day, it left
    # out the week and month rows of the days after it).
    in_rollups = rolled
    rolling = state.rolling_day
    if (
        rolling is not None
        and state.rolling_mark is not None
        and (rolled is None or rolling > rolled)
    ):
        in_rollups = rolling
    latest = None
    result = []
    for piece in pieces:
        if rolled is not None and piece.end <= rolled:
            result.append(piece)
            continue
        if piece.period == periods.DAY:
            result.append(periods.Piece(periods.OPEN_DAY, piece.start))
            continue
        if latest is None:
            latest = (
                OpenDailyImpressions.objects.order_by("-day").values_list("day", flat=True).first()
                or date.min
            )
        if in_rollups is not None and piece.start <= in_rollups:
            result.append(piece)
        first = piece.start if rolled is None else max(piece.start, rolled + timedelta(days=1))
        # The day being rolled up: its open rows only, the rollup row holds its moved ones. Any
        # later day has only open rows: the same as an open day.
        result += [
            periods.Piece(periods.OPEN_REST if day == in_rollups else periods.OPEN_DAY, day)
            for day in periods.days(first, min(piece.end, latest))
        ]
    return result


def threshold_top(pieces, limit):
    """Top `limit` of a sum over pieces, reading each piece from its biggest counts down.

    An object missing from the first `depth` rows of every piece has at most, in each piece, the
    count of that piece's last row read: their sum bounds it. Once the limit-th exact sum among
    the objects seen beats that bound, no unseen object can enter the top (Fagin's threshold
    algorithm); popular objects dominate real traffic, so one round usually settles it.
    """
    depth = max(FIRST_DEPTH, 2 * limit)
    while True:
        tops = [piece_top(piece, depth) for piece in pieces]
        candidates = {object_id for rows in tops for object_id, _ in rows}
        if len(candidates) > MAX_CANDIDATES:
            return ranked_sums(pieces, limit=limit)
        # A piece with fewer rows than asked was read whole: it adds nothing to the bound.
        bound = sum(rows[-1][1] for rows in tops if len(rows) == depth)
        ranked = ranked_sums(pieces, limit=limit, object_ids=candidates)
        if bound == 0 or (len(ranked) == limit and ranked[-1][1] > bound):
            return ranked
        depth *= 4


def piece_top(piece, limit):
    """[(object_id, count), …] of one piece, highest first, ties by id."""
    if piece.period == periods.OPEN_DAY:
        return open_day_top(piece.start, limit)
    if piece.period == periods.OPEN_REST:  # the day being rolled up: rare, and short
        return ranked_rows(OpenDailyImpressions.objects.filter(day=piece.start), limit)
    if piece.period == periods.DAY:
        rows = DailyImpressions.objects.filter(day=piece.start)
    else:
        rows = PeriodImpressions.objects.filter(period=piece.period, start=piece.start)
    return ranked_rows(rows, limit)


def open_day_top(day, limit):
    """A day not rolled up: its top is the first rows of its leaders (an index read), down to
    OpenDayLeaders.LEADERS; deeper, a sort of its rows (open, and moved if it is being rolled
    up), summed per object."""
    if limit <= OpenDayLeaders.LEADERS:
        return ranked_rows(OpenDayLeaders.objects.filter(day=day), limit)
    # Summed per object: an object of the day being rolled up can have rows in both tables (an
    # open row below the mark, until the roll-up folds it); listed side by side, it came twice,
    # each time with part of its count. On PostgreSQL a hash full join of the two, as fast as
    # that list for a day without daily rows (today: 33 ms for 100,000 rows, against 35), where a
    # GROUP BY took 150-190 ms; other databases (MySQL has no FULL JOIN) sum them.
    if connection.vendor != "postgresql":
        return ranked_sums([periods.Piece(periods.OPEN_DAY, day)], limit)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(o.object_id, d.object_id) AS object_id,"
            " coalesce(o.count, 0) + coalesce(d.count, 0) AS total"
            f" FROM (SELECT object_id, count FROM {OpenDailyImpressions._meta.db_table}"
            " WHERE day = %s AND count > 0) AS o"
            f" FULL JOIN (SELECT object_id, count FROM {DailyImpressions._meta.db_table}"
            " WHERE day = %s AND count > 0) AS d ON d.object_id = o.object_id"
            " ORDER BY total DESC, object_id LIMIT %s",
            [day, day, limit],
        )
        return [(int(object_id), int(total)) for object_id, total in cursor.fetchall()]


def ranked_rows(rows, limit):
    rows = rows.filter(count__gt=0).order_by("-count", "object_id")
    return list(rows.values_list("object_id", "count")[:limit])


def ranked_sums(pieces, limit, object_ids=None):
    """The sums over `pieces` (of `object_ids` only, if given), ranked, in one SQL statement."""
    if object_ids is not None and not object_ids:
        return []
    sql, params = sums_query(pieces, object_ids)
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} ORDER BY total DESC, object_id LIMIT %s", [*params, limit])
        return [(int(object_id), int(total)) for object_id, total in cursor.fetchall()]


def sums_query(pieces, object_ids=None, extra=""):
    """SQL and params of `SELECT object_id, SUM(count) AS total{extra} … GROUP BY object_id`
    over `pieces` (of `object_ids` only, if given), unordered."""
    parts, params = [], []
    for kinds, model in (
        # An open day's rows the roll-up moved already are daily rows of that day.
        ((periods.DAY, periods.OPEN_DAY), DailyImpressions),
        ((periods.OPEN_DAY, periods.OPEN_REST), OpenDailyImpressions),
    ):
        day_list = [piece.start for piece in pieces if piece.period in kinds]
        if day_list:
            parts.append(
                f"SELECT object_id, count FROM {model._meta.db_table}"
                f" WHERE day IN ({_marks(day_list)})"
            )
            params += day_list
    for period in (periods.WEEK, periods.MONTH):
        starts = [piece.start for piece in pieces if piece.period == period]
        if starts:
            parts.append(
                f"SELECT object_id, count FROM {PeriodImpressions._meta.db_table}"
                f" WHERE period = %s AND start IN ({_marks(starts)})"
            )
            params += [period, *starts]
    where = ""
    if object_ids is not None:
        ids = sorted(object_ids)
        where = f" WHERE object_id IN ({_marks(ids)})"
        params += ids
    sql = (
        f"SELECT object_id, SUM(count) AS total{extra} FROM ("
        + " UNION ALL ".join(parts)
        + f") AS pieces{where} GROUP BY object_id"
    )
    return sql, params


def _marks(values):
    return ", ".join(["%s"] * len(values))


def filled(counts, start, end):
    """[(day, count), …] for every day of start..end, 0 where `counts` has no entry."""
    return [(day, counts.get(day, 0)) for day in periods.days(start, end)]


def write_csv(out, post_ids, start, end):
    """Write `post_id,day,impressions` for each post (in the given order) and each day."""
    ids = [int(post_id) for post_id in post_ids]
    by_post = history(ids, start, end)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["post_id", "day", "impressions"])
    for post_id in ids:
        for day, count in filled(by_post[post_id], start, end):
            writer.writerow([post_id, day.isoformat(), count])
