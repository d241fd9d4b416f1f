"""The daily roll-up, a task of its own: ended days move from the open rows to the daily, week
and month rows in batches, then the history older than IMPRESSIONS_HISTORY_DAYS is deleted.

Every step is its own short transaction and picks up where the last committed one stopped
(HistoryRollup holds the day being rolled and the last object moved), so a roll-up killed at any
point is finished by the next one, and two at once take turns. A day is rolled up in three kinds
of step (the locks are history_writer's):

1. start: with the state's lock, pick the oldest open day up to yesterday and note it;
2. move, as often as needed: with that day's lock, move the next BATCH_ROWS of its open rows (in
   object order) to the daily rows and add them to the week and month rows;
3. finish: with that day's lock, once it has no open row left, mark it rolled up.

Only flush batches holding that day's rows (around midnight) wait for a step, one step at most;
after each batch the roll-up rests as long as the batch took, leaving the flushes the CPU.
"""

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Min
from django.utils import timezone

from . import periods, stats
from .history_writer import (
    LOCK_CLASS,
    STATE_LOCK,
    add_periods_portable,
    add_portable,
    add_to_periods_sql,
    table,
)
from .models import (
    DailyImpressions,
    HistoryRollup,
    OpenDailyImpressions,
    OpenDayLeaders,
    PeriodImpressions,
    SiteDailyImpressions,
)

logger = logging.getLogger(__name__)

# After each batch, rest this many times as long as the batch took.
PACE = 1.0
# Rows a batch moves or deletes: a flush batch holding the day being rolled up waits for one
# batch at most (~0.1-0.5 s at this size over a 40,000,000-row history).
BATCH_ROWS = 2000


@dataclass
class RollupReport:
    days: list = field(default_factory=list)  # the days rolled up
    rows_moved: int = 0
    rows_pruned: int = 0
    duration: float = 0.0  # seconds

    def as_dict(self):
        return {**asdict(self), "days": [day.isoformat() for day in self.days]}

    def __str__(self):
        days = ", ".join(day.isoformat() for day in self.days) or "none"
        return (
            f"roll-up: days {days}: {self.rows_moved} rows moved; {self.rows_pruned} rows older"
            f" than the kept history deleted; {self.duration:.3f} s"
        )


def roll_up(today=None, batch_size=None, pace=PACE):
    """Roll up every ended day (before `today`, default today in TIME_ZONE), then prune."""
    today = today or stats.today()
    batch_size = batch_size or BATCH_ROWS
    through = today - timedelta(days=1)
    report = RollupReport()
    started = time.monotonic()
    while (day := start_next_day(through)) is not None:
        report.days.append(day)
        while True:
            batch_started = time.monotonic()
            moved = move_batch(day, batch_size)
            report.rows_moved += moved
            if moved < batch_size and finish_day(day):
                break
            rest(pace, batch_started)
    report.rows_pruned = prune(today, batch_size, pace)
    report.duration = time.monotonic() - started
    logger.info("%s", report, extra={"rollup": report.as_dict()})
    return report


def rest(pace, since):
    if pace:
        time.sleep((time.monotonic() - since) * pace)


def lock(*keys, shared=False):
    """Transaction-scoped advisory locks (PostgreSQL), in the order given."""
    if connection.vendor != "postgresql":
        return  # SQLite lets one writer in at a time
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    with connection.cursor() as cursor:
        for key in keys:
            cursor.execute(f"SELECT {function}(%s, %s)", [LOCK_CLASS, key])


def locked_state():
    HistoryRollup.objects.bulk_create([HistoryRollup(id=1)], ignore_conflicts=True)
    return HistoryRollup.objects.select_for_update().get(id=1)


def start_next_day(through):
    """The day being rolled up, or the oldest open day up to `through`, noted as being rolled
    up; None when every day up to `through` is rolled up (noted too)."""
    with transaction.atomic():
        lock(STATE_LOCK)  # no flush batch in flight: none is writing an open row of an older day
        state = locked_state()
        if state.rolling_day is not None:
            return state.rolling_day
        day = OpenDailyImpressions.objects.filter(day__lte=through).aggregate(day=Min("day"))["day"]
        if day is None:
            if state.rolled_through is None or state.rolled_through < through:
                state.rolled_through = through
                state.save()
            return None
        # No open row before `day`: the days before it are rolled up (or have no history).
        if state.rolled_through is None or state.rolled_through < day - timedelta(days=1):
            state.rolled_through = day - timedelta(days=1)
        state.rolling_day = day
        state.rolling_mark = None
        state.rolling_rows = OpenDailyImpressions.objects.filter(day=day).count()
        state.rolling_moved = 0
        state.started_at = timezone.now()
        state.finished_at = None
        state.save()
        return day


def move_batch(day, batch_size):
    """Move the next `batch_size` open rows of `day` (object order); returns how many moved."""
    with transaction.atomic():
        lock(day.toordinal())
        state = locked_state()
        if state.rolling_day != day:
            return 0  # another roll-up finished it
        if connection.vendor == "postgresql":
            moved, last = move_batch_postgresql(day, state.rolling_mark, batch_size)
        else:
            moved, last = move_batch_portable(day, state.rolling_mark, batch_size)
        if moved:
            state.rolling_mark = last
            state.rolling_moved += moved
            state.save()
        return moved


def move_batch_postgresql(day, mark, batch_size):
    after = "" if mark is None else " AND object_id > %(mark)s"
    oldest = stats.oldest_kept_day()
    # Weeks and months that start before the oldest kept day are never read; the prune deletes them.
    periods_kept = "true" if oldest is None else "p.start >= %(oldest)s"
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH chosen AS ("
            f" SELECT object_id FROM {table(OpenDailyImpressions)} WHERE day = %(day)s{after}"
            " ORDER BY object_id LIMIT %(size)s),"
            f" moved AS (DELETE FROM {table(OpenDailyImpressions)} AS o USING chosen"
            " WHERE o.day = %(day)s AND o.object_id = chosen.object_id"
            " RETURNING o.object_id, o.day, o.count),"
            f" daily AS (INSERT INTO {table(DailyImpressions)} AS h (object_id, day, count)"
            " SELECT object_id, day, count FROM moved ORDER BY object_id"
            " ON CONFLICT (object_id, day) DO UPDATE SET count = h.count + EXCLUDED.count),"
            f" periods AS ({add_to_periods_sql('moved', periods_kept)})"
            " SELECT count(*), max(object_id) FROM moved",
            {"day": day, "mark": mark, "size": batch_size, "oldest": oldest},
        )
        return cursor.fetchone()


def move_batch_portable(day, mark, batch_size):
    rows = OpenDailyImpressions.objects.filter(day=day)
    if mark is not None:
        rows = rows.filter(object_id__gt=mark)
    moved = list(rows.order_by("object_id").values_list("object_id", "count")[:batch_size])
    if not moved:
        return 0, None
    counts = {(object_id, day): count for object_id, count in moved}
    add_portable(DailyImpressions, ("object_id", "day"), counts)
    add_periods_portable(counts, stats.oldest_kept_day())
    OpenDailyImpressions.objects.filter(
        day=day, object_id__in=[object_id for object_id, _ in moved]
    ).delete()
    return len(moved), moved[-1][0]


def finish_day(day):
    """Mark `day` rolled up once it has no open row left; False if rows came meanwhile."""
    with transaction.atomic():
        lock(day.toordinal())
        state = locked_state()
        if state.rolling_day != day:
            return True
        if OpenDailyImpressions.objects.filter(day=day).exists():
            return False
        state.rolled_through = day
        state.rolling_day = None
        state.rolling_mark = None
        state.finished_at = timezone.now()
        state.save()
        # The daily table's index serves its top from now on.
        OpenDayLeaders.objects.filter(day=day).delete()
        return True


def prune(today, batch_size, pace=PACE):
    """Delete the history before the oldest kept day, in batches; returns the rows deleted.

    The flush writes no history for those days, so only a flush running across midnight can
    meet these deletes: the day locks keep them apart.
    """
    oldest = stats.oldest_kept_day(today)
    if oldest is None:
        return 0
    deleted = 0
    for model in (DailyImpressions, OpenDailyImpressions, OpenDayLeaders, SiteDailyImpressions):
        while (day := oldest_day_before(model, oldest)) is not None:
            deleted += delete_batches(model, {"day": day}, [day], batch_size, pace)
    for period in (periods.WEEK, periods.MONTH):
        while (start := oldest_period_before(period, oldest)) is not None:
            days = periods.days(start, periods.Piece(period, start).end)
            rows = {"period": period, "start": start}
            deleted += delete_batches(PeriodImpressions, rows, days, batch_size, pace)
    return deleted


def oldest_day_before(model, oldest):
    return model.objects.filter(day__lt=oldest).aggregate(day=Min("day"))["day"]


def oldest_period_before(period, oldest):
    rows = PeriodImpressions.objects.filter(period=period, start__lt=oldest)
    return rows.aggregate(start=Min("start"))["start"]


def delete_batches(model, equal, days, batch_size, pace):
    """Delete the rows of `model` whose columns are `equal`, `batch_size` a transaction, each
    holding the locks of `days`; returns how many."""
    deleted = 0
    while True:
        batch_started = time.monotonic()
        with transaction.atomic():
            lock(*(day.toordinal() for day in days))
            if connection.vendor == "postgresql":
                where = " AND ".join(f"{connection.ops.quote_name(name)} = %s" for name in equal)
                with connection.cursor() as cursor:
                    cursor.execute(
                        f"DELETE FROM {table(model)} WHERE ctid = ANY(ARRAY("
                        f"SELECT ctid FROM {table(model)} WHERE {where} LIMIT %s))",
                        [*equal.values(), batch_size],
                    )
                    count = cursor.rowcount
            else:
                count, _ = model.objects.filter(**equal).delete()
        deleted += count
        if count < batch_size:
            return deleted
        rest(pace, batch_started)


def status():
    """The roll-up's progress for the dashboard: None before the first roll-up."""
    state = HistoryRollup.objects.filter(id=1).first()
    if state is None:
        return None
    return {
        "rolled_through": state.rolled_through,
        "rolling_day": state.rolling_day,
        "rows": state.rolling_rows,
        "moved": state.rolling_moved,
        "started_at": state.started_at,
        "finished_at": state.finished_at,
    }
