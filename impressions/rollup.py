"""The daily roll-up, a task of its own: ended days move from the open rows to the daily, week
and month rows in batches, then the history older than IMPRESSIONS_HISTORY_DAYS is deleted.

Every step is its own short transaction and picks up where the last committed one stopped
(HistoryRollup holds the day being rolled and the last object moved), so a roll-up killed at any
point is finished by the next one, and two at once take turns. A day is rolled up in three kinds
of step (the locks are history_writer's):

1. start: with the state's lock, pick the oldest open day up to yesterday and note it;
2. move, as often as needed: with that day's lock, move the next BATCH_ROWS of its open rows (in
   object order) to the daily rows and add them to the week and month rows; once those are
   done, fold in the open rows below the mark that no flush should have written (fold_late_rows);
3. finish: with that day's lock, once it has no open row left, mark it rolled up (rolled_through
   never goes down: a day rolled up already, with open rows again, is rolled once more).

Only flush batches holding that day's rows (around midnight) wait for a step, one step at most,
and the roll-up keeps that short and out of their way: each batch's rows follow a time budget
(IMPRESSIONS_ROLLUP_BATCH_SECONDS), a batch starts only once no flush batch holds the day (a
roll-up waiting in the lock's queue would hold back every flush batch behind it), and after each
batch the roll-up rests IMPRESSIONS_ROLLUP_PACE times as long as the batch took, leaving the
flushes the CPU.
"""

import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from django.db import DatabaseError, connection, transaction
from django.db.models import Min
from django.utils import timezone

from redis_endpoints import redact_text, redacting_logger

from . import periods, stats, transactions
from .conf import conf
from .exceptions import RollupError
from .history_writer import (
    FLUSH_LOCK,
    LOCK_CLASS_SQL,
    LOCK_NOT_AVAILABLE,
    STATE_LOCK,
    add_periods_portable,
    add_portable,
    add_to_periods_sql,
    leaders_sql,
    lock_wait_limit,
    rollup_is_running,
    rollup_running,
    sqlstate,
    table,
    update_leaders_portable,
)
from .models import (
    DailyImpressions,
    HistoryRollup,
    OpenDailyImpressions,
    OpenDayLeaders,
    PeriodImpressions,
    SiteDailyImpressions,
)

logger = redacting_logger(__name__)

# Rows a batch moves or deletes at most, and the fixed size of --batch-size's batches: a flush
# batch holding the day being rolled up waits for one batch at most.
BATCH_ROWS = 2000
# With a time budget (IMPRESSIONS_ROLLUP_BATCH_SECONDS), the first batch's rows; each next
# batch's are the last one's scaled to the budget, at least MIN_ROWS and at most doubled.
FIRST_ROWS = 100
MIN_ROWS = 10
# Before a batch, the roll-up waits this long at most (trying the day's lock every YIELD_PAUSE
# seconds) for the flush batches holding the day to finish; then it queues for the lock.
YIELD_SECONDS = 5.0
YIELD_PAUSE = 0.01


@dataclass
class RollupReport:
    days: list = field(default_factory=list)  # the days rolled up
    rows_moved: int = 0
    rows_pruned: int = 0
    duration: float = 0.0  # seconds

    def as_dict(self):
        return {**asdict(self), "days": [day.isoformat() for day in self.days]}

    def __str__(self):
        days = ", ".join(day.isoformat() for day in self.days)
        moved = f"days {days}: {self.rows_moved} rows moved" if days else "no day to roll up"
        return (
            f"roll-up: {moved}; {self.rows_pruned} rows older than the kept history deleted;"
            f" {self.duration:.3f} s"
        )


class BatchRows:
    """The rows of each next batch: `most`, or, with a time budget (seconds), as many as the
    last batch suggests fit in it (FIRST_ROWS to start, at least MIN_ROWS, at most `most` and
    twice the last batch)."""

    def __init__(self, most, budget=0):
        self.most = most
        self.budget = budget
        self.rows = min(most, FIRST_ROWS) if budget else most

    def took(self, rows, seconds):
        """A batch of `rows` (of self.rows asked) took `seconds`."""
        if not self.budget or rows < self.rows:
            return  # a day's or a period's last rows say nothing of a full batch
        fit = int(rows * self.budget / max(seconds, 1e-4))
        self.rows = max(MIN_ROWS, min(self.most, 2 * rows, fit))


def roll_up(today=None, batch_size=None, pace=None, budget=None):
    """Roll up every ended day (before `today`, default today in TIME_ZONE), then prune.

    `batch_size`: rows per batch, fixed; by default each batch's rows follow the time budget
    `budget` (IMPRESSIONS_ROLLUP_BATCH_SECONDS; 0: batches of BATCH_ROWS). After each batch, rest
    `pace` (IMPRESSIONS_ROLLUP_PACE) times as long as it took.
    """
    today = today or stats.today()
    pace = conf.ROLLUP_PACE if pace is None else pace
    if budget is None:
        budget = 0 if batch_size else conf.ROLLUP_BATCH_SECONDS
    sizes = BatchRows(batch_size or BATCH_ROWS, budget)
    through = today - timedelta(days=1)
    report = RollupReport()
    started = time.monotonic()
    try:
        with rollup_running():
            while (day := start_next_day(through)) is not None:
                report.days.append(day)
                report.rows_moved += move_day(day, sizes, pace)
            report.rows_pruned = prune(today, sizes, pace)
    except DatabaseError as error:
        days = f" of {', '.join(day.isoformat() for day in report.days)}" if report.days else ""
        raise RollupError(
            f"the database failed during the roll-up{days}, after moving {report.rows_moved}"
            " rows; the next roll-up goes on from there:"
            f" {database_hint(error)}{redact_text(str(error))}"
        ) from error
    report.duration = time.monotonic() - started
    logger.info("%s", report, extra={"rollup": report.as_dict()})
    return report


def step():
    """A roll-up step's transaction (transactions.atomic): each lock waited for
    IMPRESSIONS_FLUSH_LOCK_TIMEOUT at most, as the flush batches wait for the roll-up's steps.
    A step waits for the flush batches in flight (one each), which the database's lock_timeout,
    a DBA's 1 s, could be shorter than: the roll-up failed there, and went on only at its next
    run."""
    return transactions.atomic(lock_timeout=conf.FLUSH_LOCK_TIMEOUT)


def database_hint(error):
    """What a lock wait that ran out means here, naming the setting that bounds it; else
    nothing. Read from the SQLSTATE, not the words (lc_messages may translate them)."""
    if sqlstate(error) != LOCK_NOT_AVAILABLE:
        return ""
    return (
        f"a lock was not granted within {lock_wait_limit()}: a flush batch of the day being"
        " rolled up held it longer, or another transaction holds the roll-up's row or a lock on"
        " one of its tables (a migration's ALTER TABLE or CREATE INDEX, a LOCK TABLE);"
        " pg_stat_activity shows it, perhaps 'idle in transaction'; "
    )


def move_day(day, sizes, pace):
    """Move `day`'s open rows, a batch at a time, and mark it rolled up; returns the rows moved.

    Each pass moves rows or finishes the day: a batch short of its rows has taken every open
    row of the day, after the mark and below it, so the finish fails only for rows a flush
    wrote in between, which the next pass moves."""
    moved_rows = 0
    while True:
        rows = sizes.rows
        wait_for_flushes(day)
        batch_started = time.monotonic()
        moved = move_batch(day, rows)
        took = time.monotonic() - batch_started
        moved_rows += moved
        if moved < rows and finish_day(day):
            return moved_rows
        sizes.took(moved, took)
        rest(pace, took)


def rest(pace, seconds):
    if pace:
        time.sleep(seconds * pace)


def wait_for_flushes(*days, patience=YIELD_SECONDS):
    """Wait (up to `patience` seconds) until no flush runs and no flush batch holds the lock of
    one of `days`; True if so, False if the patience ran out (the batch goes ahead then).

    A batch started during a flush would share the CPU with it, and the flush's batches of the
    day would wait for it. Queueing for a day's lock instead would also hold back, behind the
    roll-up, every flush batch asking for the day after it: two waits for a flush instead of one.
    Tried without waiting, the locks are let go at once; the batch takes the day's again (a flush
    batch coming in between waits one batch).
    """
    if connection.vendor != "postgresql":
        return True
    keys = [FLUSH_LOCK, *(day.toordinal() for day in days)]
    tries = " AND ".join([f"pg_try_advisory_xact_lock({LOCK_CLASS_SQL}, %s)"] * len(keys))
    deadline = time.monotonic() + patience
    while True:
        # Locks tried, nothing read: the isolation level does not matter here.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SELECT {tries}", keys)
            if cursor.fetchone()[0]:
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(YIELD_PAUSE)


def lock(*keys, shared=False):
    """Transaction-scoped advisory locks (PostgreSQL), in the order given."""
    if connection.vendor != "postgresql":
        return  # SQLite lets one writer in at a time
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    with connection.cursor() as cursor:
        for key in keys:
            cursor.execute(f"SELECT {function}({LOCK_CLASS_SQL}, %s)", [key])


def locked_state():
    """The roll-up's row (made by the migrations; again if gone), locked until the transaction ends.

    Locked first, inserted only if missing: on MySQL/MariaDB an INSERT IGNORE of the existing
    row leaves a shared lock that the SELECT … FOR UPDATE upgrades, and a flush batch waiting
    for the row in between (the portable path locks it) made a deadlock (1213)."""
    state = HistoryRollup.objects.select_for_update().filter(id=1).first()
    if state is None:
        HistoryRollup.objects.bulk_create([HistoryRollup(id=1)], ignore_conflicts=True)
        state = HistoryRollup.objects.select_for_update().get(id=1)
    return state


def start_next_day(through):
    """The day being rolled up, or the oldest open day up to `through`, noted as being rolled
    up; None when every day up to `through` is rolled up (noted too)."""
    with step():
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
    """Move the next `batch_size` open rows of `day` (object order), then, if fewer were left,
    fold in its open rows below the mark (fold_late_rows); returns how many moved."""
    with step():
        lock(day.toordinal())
        state = locked_state()
        if state.rolling_day != day:
            return 0  # another roll-up finished it
        mark = state.rolling_mark
        move = move_batch_postgresql if connection.vendor == "postgresql" else move_batch_portable
        moved, last = move(day, mark, batch_size)
        late = 0
        if moved < batch_size and mark is not None:
            late = fold_late_rows(day, mark, batch_size - moved)
        if moved:
            state.rolling_mark = last
        if moved or late:
            state.rolling_moved += moved + late
            state.rolling_rows += late  # they came after the count at the start
            state.save()
        return moved + late


def fold_late_rows(day, mark, batch_size):
    """Fold up to `batch_size` open rows of `day` at or below the roll-up's `mark` into the
    daily, week and month rows; returns how many, with a warning naming the day.

    The locks keep such rows from being written: a flush batch holding the day sends the counts
    of objects up to the mark to their daily rows (history_writer.batch_statements). Anything
    else (an old build's flush in a rolling deploy, a restored backup, a manual INSERT) left
    them below the mark, where the batches never looked: the day was never done, and the
    roll-up looped on it for ever, a batch moving nothing and the finish finding rows.

    Exactly once: each impression is in exactly one of the rows a read sums. While the day is
    being rolled up, the reads sum, per object, its daily row and its open row of the day, and a
    week or month its rollup row and the open rows of its days not rolled up; a day's top sums
    too (stats.readable). The fold, in one transaction holding the day's lock (no flush batch of
    the day between), deletes the open row and adds its count to the object's daily, week and
    month rows: what a read sums is the same before and after, and the day's leaders get the
    object's whole count (a flush around the locks wrote them the open row's part only).
    """
    rows = OpenDailyImpressions.objects.filter(day=day, object_id__lte=mark).order_by("object_id")
    ids = list(rows.values_list("object_id", flat=True)[:batch_size])
    if not ids:
        return 0
    if connection.vendor == "postgresql":
        move_batch_postgresql(day, None, len(ids), through=ids[-1])
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH folded AS (SELECT object_id, day, count FROM {table(DailyImpressions)}"
                " WHERE day = %s AND object_id = ANY(%s))" + leaders_sql("folded"),
                [day, ids],
            )
    else:
        move_batch_portable(day, None, len(ids), through=ids[-1])
        update_leaders_portable([(object_id, day) for object_id in ids])
    logger.warning(
        "roll-up of %s: open rows of objects it had already moved (at or below its mark, %s)"
        " folded into their daily, week and month rows: %d. The locks keep a flush from writing"
        " them: was a flush of an older build running (a rolling deploy), a backup restored or"
        " a row inserted by hand? Nothing is lost or counted twice; if an older build is still"
        " flushing, finish the deploy.",
        day,
        mark,
        len(ids),
        extra={"rollup_late_rows": {"day": day.isoformat(), "rows": len(ids)}},
    )
    return len(ids)


def move_batch_postgresql(day, mark, batch_size, through=None):
    after = "" if mark is None else " AND object_id > %(mark)s"
    if through is not None:
        after += " AND object_id <= %(through)s"
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
            {"day": day, "mark": mark, "through": through, "size": batch_size, "oldest": oldest},
        )
        return cursor.fetchone()


def move_batch_portable(day, mark, batch_size, through=None):
    rows = OpenDailyImpressions.objects.filter(day=day)
    if mark is not None:
        rows = rows.filter(object_id__gt=mark)
    if through is not None:
        rows = rows.filter(object_id__lte=through)
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
    with step():
        lock(day.toordinal())
        state = locked_state()
        if state.rolling_day != day:
            return True
        if OpenDailyImpressions.objects.filter(day=day).exists():
            return False
        # Never lowered: a day rolled up already can be rolled again (its open rows from a
        # restored backup or an old build's flush); set to it, rolled_through went back to it
        # until the next start, the later days read as open (their rollup rows left out).
        if state.rolled_through is None or state.rolled_through < day:
            state.rolled_through = day
        state.rolling_day = None
        state.rolling_mark = None
        state.finished_at = timezone.now()
        state.save()
        # The daily table's index serves its top from now on.
        OpenDayLeaders.objects.filter(day=day).delete()
        return True


def prune(today, sizes, pace=0):
    """Delete the history before the oldest kept day, in batches (`sizes`: BatchRows, or a
    number of rows); returns the rows deleted.

    The flush writes no history for those days, so only a flush running across midnight can
    meet these deletes: the day locks keep them apart.
    """
    oldest = stats.oldest_kept_day(today)
    if oldest is None:
        return 0
    if isinstance(sizes, int):
        sizes = BatchRows(sizes)
    deleted = 0
    for model in (DailyImpressions, OpenDailyImpressions, OpenDayLeaders, SiteDailyImpressions):
        while (day := oldest_day_before(model, oldest)) is not None:
            deleted += delete_batches(model, {"day": day}, [day], sizes, pace)
    for period in (periods.WEEK, periods.MONTH):
        while (start := oldest_period_before(period, oldest)) is not None:
            days = periods.days(start, periods.Piece(period, start).end)
            rows = {"period": period, "start": start}
            deleted += delete_batches(PeriodImpressions, rows, days, sizes, pace)
    return deleted


def oldest_day_before(model, oldest):
    return model.objects.filter(day__lt=oldest).aggregate(day=Min("day"))["day"]


def oldest_period_before(period, oldest):
    rows = PeriodImpressions.objects.filter(period=period, start__lt=oldest)
    return rows.aggregate(start=Min("start"))["start"]


def delete_batches(model, equal, days, sizes, pace):
    """Delete the rows of `model` whose columns are `equal`, `sizes.rows` a transaction, each
    holding the locks of `days`; returns how many."""
    deleted = 0
    while True:
        batch_size = sizes.rows
        wait_for_flushes(*days)
        batch_started = time.monotonic()
        with step():
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
        took = time.monotonic() - batch_started
        sizes.took(count, took)
        rest(pace, took)


def status():
    """The roll-up's progress for the dashboard: None before the first roll-up. `running`: with
    a day half rolled up, whether a roll-up is at it (None if unknown: not PostgreSQL), or was
    stopped (killed) and waits for the next one to go on."""
    state = HistoryRollup.objects.filter(id=1).first()
    if state is None:
        return None
    return {
        "rolled_through": state.rolled_through,
        "rolling_day": state.rolling_day,
        "running": rollup_is_running() if state.rolling_day else None,
        "rows": state.rolling_rows,
        "moved": state.rolling_moved,
        "started_at": state.started_at,
        "finished_at": state.finished_at,
    }
