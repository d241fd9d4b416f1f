"""The database side of a flush: batches in their own transactions, each gated by the ledger row.

A flush id's snapshots are applied in batches of lines (impressions/batches.py), one transaction
each: lock the ledger row, take the next lines above its marks, write them (the totals, the
history, the site-wide rows), move the marks, commit. A crash loses at most the batch in flight;
whoever applies the snapshots next starts after the marks, so each line counts once.

Lock order, the same in every transaction that writes these rows, so that concurrent flushes
wait on each other but never deadlock: the ledger row; the counted objects' rows in id order;
their history rows (written only by a transaction holding the object's row, in (object, day)
order); the site-wide day rows, in day order; impressions/history_writer.py adds the history's.
"""

import io
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import DataError, connection
from django.utils import timezone

from redis_endpoints import redacting_logger

from . import batches, history_writer, keys, transactions
from .conf import conf, counted_model, counted_names, counted_rows
from .models import Flush
from .periods import utc

logger = redacting_logger(__name__)

# The flush benchmark turns this off to time a flush without the history (benchmarks/flush.py).
# Not a setting: the history is always written.
WRITE_HISTORY = True
# The mark of a shard applied whole: above every field.
DONE = batches.DONE
# One batch's lines, copied in for the batch's statements; emptied at every commit.
BATCH_TABLE = "impressions_batch"


@dataclass
class Applied:
    """What applying a flush id's snapshots (or one batch of them) did to the database."""

    posts_updated: int = 0
    impressions_applied: int = 0
    posts_dropped: int = 0
    impressions_dropped: int = 0

    def __iadd__(self, other):
        self.posts_updated += other.posts_updated
        self.impressions_applied += other.impressions_applied
        self.posts_dropped += other.posts_dropped
        self.impressions_dropped += other.impressions_dropped
        return self


def id_time(flush_id):
    """The UTC second a flush id of this build starts with; None for another's."""
    try:
        return datetime.strptime(flush_id[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def started_at_of(flush_id):
    """A flush id starts with its UTC start time; fall back to now for foreign ids."""
    moment = id_time(flush_id)
    if moment is None:
        return timezone.now()
    # USE_TZ = False: the database takes naive datetimes only, TIME_ZONE's wall clock.
    return (
        moment if settings.USE_TZ else timezone.make_naive(moment, timezone.get_default_timezone())
    )


# The ledger's times in UTC. Under USE_TZ = False they are TIME_ZONE's naive wall clock, which
# the database keeps without the fold that tells the two passes of an hour a DST change repeats
# apart (PostgreSQL reads such a time as its second pass, a text column as its first): compared
# or subtracted as they are, a 30 s flush across New York's autumn change ran -59 min 30 s.


def reading(moment):
    """utc(moment) for a ledger time: a naive one whose instant is beyond datetime's range (a
    wall clock within a day of year 1 or 9999, another build's row) as if UTC's, not an error."""
    try:
        return utc(moment)
    except OverflowError:
        return moment.replace(tzinfo=UTC)


def readings(moment):
    """The UTC instants a ledger time may be, earliest first: an aware one is one; a naive one,
    either pass of a repeated hour (one instant elsewhere)."""
    if timezone.is_aware(moment):
        return [moment.astimezone(UTC)]
    return sorted({reading(moment.replace(fold=fold)) for fold in (0, 1)})


def started_utc(flush):
    """When `flush` started, in UTC: the reading of its started_at nearest the UTC second its
    id starts with (the id is made a moment before started_at); another build's id, as read."""
    second = id_time(flush.id)
    if second is None:
        return reading(flush.started_at)
    return min(readings(flush.started_at), key=lambda moment: abs(moment - second))


def finished_utc(flush):
    """When `flush` finished, in UTC (None: not yet): the first reading of its finished_at not
    before its start (a flush running longer than a repeated hour may be shown an hour short)."""
    if flush.finished_at is None:
        return None
    start = started_utc(flush)
    options = readings(flush.finished_at)
    return next((moment for moment in options if moment >= start), options[-1])


def run_time(flush):
    """How long `flush` ran (None: not finished yet), never less than nothing."""
    end = finished_utc(flush)
    return None if end is None else max(end - started_utc(flush), timedelta(0))


def apply_snapshots(
    flush_id,
    lines,
    *,
    batch_size,
    recovered_by="",
    before_commit=None,
    after_commit=None,
    started_at=None,
    part=0,
    parts=1,
    applied=None,
):
    """Apply `lines` (batches.SnapshotLines: Redis's snapshots of `flush_id`) above the ledger's
    marks; returns what this call applied. `started_at`: when the flush started, if known to the
    microsecond (its id holds the second). `part` of `parts`: where the order of the batches
    starts, if this call writes the ledger row (impressions/batches.py); else the row says. The
    batches also end where the other parts start.

    Two flushes applying the same snapshots (a crashed flush's, a message delivered twice) take
    turns on the ledger row, batch by batch, each starting after the other's marks.

    `applied`: an Applied to add the batches to once they commit (the caller keeps what
    committed before an error, and counts it: the next flush skips those batches).
    """
    applied = Applied() if applied is None else applied
    # Where the window's parts start (about: each part's lines spread alike), part 0 at the
    # first line (where an order from elsewhere goes round).
    stops = [lines.field_at(other, parts) for other in range(parts)] if parts > 1 else []
    # A flush's own row (`started_at` given) is missing until its first batch inserts it (another
    # flush that found its snapshots may have, but seldom).
    missing = started_at is not None
    while True:
        # Each lock waited for IMPRESSIONS_FLUSH_LOCK_TIMEOUT at most (PostgreSQL), from the
        # first, the ledger row's. Without a limit a batch waited for as long as the lock's
        # holder stayed: a transaction left open on a counted row (a session idle in
        # transaction), or another flush applying the same snapshot stalled in a batch (its
        # worker paused or cut off, its session open); left-overs go first, so every later flush
        # waited too, holding the roll-up back. The batch gives up instead, its counts kept.
        with transactions.atomic(lock_timeout=conf.FLUSH_LOCK_TIMEOUT):
            row = locked_row(
                flush_id, started_at, start=lambda: lines.field_at(part, parts), missing=missing
            )
            missing = False
            batch, last, is_last = lines.next_batch(
                marks_of(row, lines.shards), batch_size, row.start, stops
            )
            if batch is None:  # applied already, by another flush
                return applied
            done = write_batch(batch, durable=is_last)
            note_batch(row, done, lines.shards, last, is_last)
            if recovered_by:
                row.recovered_by = recovered_by
            row.save()
            if before_commit:
                before_commit()
        # Committed: counted (a batch whose commit failed is counted by whoever applies it).
        applied += done
        if after_commit:
            after_commit()
        if is_last:
            return applied
        lines.advance(last)


def locked_row(flush_id, started_at=None, start=None, missing=False):
    """The ledger row of `flush_id`, inserted if missing (with the batches' start that
    `start()` gives), locked until the transaction ends (apply_snapshots' transaction waits for it
    IMPRESSIONS_FLUSH_LOCK_TIMEOUT at most). `missing`: the row is likely not there yet, so the
    insert goes first, not after a lookup that finds nothing (a round trip less)."""
    row = None if missing else Flush.objects.select_for_update().filter(id=flush_id).first()
    if row is None:
        started_at = started_at or started_at_of(flush_id)
        new = Flush(id=flush_id, started_at=started_at, outcome=Flush.Outcome.RUNNING)
        new.start = start() if start else ""
        insert_ledger_row(new)
        row = Flush.objects.select_for_update().get(id=flush_id)
    row.marks = {shard: batches.grouped_mark(mark) for shard, mark in row.marks.items()}
    row.start = batches.grouped_mark(row.start)
    return row


def insert_ledger_row(new):
    """Insert the ledger row `new` unless another flush of its id has.

    On MySQL/MariaDB, INSERT IGNORE (ignore_conflicts) leaves a shared lock on the row another
    flush inserted meanwhile, which locked_row's SELECT … FOR UPDATE then upgrades: two flushes
    of one id (or one and the ledger's prune, queued for that row) upgrading at once deadlocked
    (1213), failing a flush. ON DUPLICATE KEY UPDATE takes the row's exclusive lock at once."""
    if connection.vendor != "mysql":
        Flush.objects.bulk_create([new], ignore_conflicts=True)
        return
    fields = Flush._meta.concrete_fields
    quote = connection.ops.quote_name
    pk = quote(Flush._meta.pk.column)
    values = [field.get_db_prep_save(field.pre_save(new, True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(Flush._meta.db_table)}"
            f" ({', '.join(quote(field.column) for field in fields)})"
            f" VALUES ({', '.join(['%s'] * len(fields))}) ON DUPLICATE KEY UPDATE {pk} = {pk}",
            values,
        )


def marks_of(row, shards):
    """{shard: the last field of it applied, DONE, or None}."""
    applied = set(row.shards_applied)
    return {shard: DONE if shard in applied else row.marks.get(str(shard)) for shard in shards}


def note_batch(row, done, shards, last, is_last):
    """Add a committed batch to the ledger row: its counts, and the marks of `shards` (a shard
    applied whole leaves the marks for the list of shards applied)."""
    row.posts_updated += done.posts_updated
    row.impressions_applied += done.impressions_applied
    row.posts_dropped += done.posts_dropped
    row.impressions_dropped += done.impressions_dropped
    marks = dict(row.marks)
    if is_last:
        row.shards_applied = sorted(set(row.shards_applied) | set(shards))
        for shard in shards:
            marks.pop(str(shard), None)
        row.outcome = Flush.Outcome.APPLIED
        row.finished_at = timezone.now()
        row.error = ""
    else:
        for shard in shards:
            if shard not in row.shards_applied:
                marks[str(shard)] = batches.later(marks.get(str(shard)), last, row.start)
        if row.outcome != Flush.Outcome.APPLIED:
            row.outcome = Flush.Outcome.RUNNING
    row.marks = marks


def write_batch(lines, durable=True):
    """Add one batch of lines to the counted objects' totals and the history; returns Applied.

    Counts of objects that no longer exist are dropped, from the history too: an object's
    history always sums to what its total received. Not `durable` (a batch before the last of its
    snapshots): on PostgreSQL its commit does not wait for the WAL to reach the disk. A server
    crash may then lose it, with its ledger marks: the snapshots, deleted only after the last
    batch's commit (which waits for all the WAL before it), are applied again from the marks
    that remained. Each count still lands once; the batches commit faster.
    """
    if connection.vendor == "postgresql":
        applied = write_batch_postgresql(lines, durable)
    else:
        applied = write_batch_portable(lines)
    if applied.posts_dropped:
        # Rows deleted since their views: nothing to mend, but said (the counts leave the totals
        # the views would have made), once a batch. Plain numbers: a log line is the same in every
        # language (counted_objects formats them for the active one, for the pages).
        singular, plural = counted_names()
        logger.warning(
            "dropped %d impressions of %d %s no longer in the database (%s): the rows were deleted"
            " after their views; no action is needed",
            applied.impressions_dropped,
            applied.posts_dropped,
            singular if applied.posts_dropped == 1 else plural,
            conf.MODEL,
            extra={
                "dropped_impressions": applied.impressions_dropped,
                "dropped_objects": applied.posts_dropped,
                "model": conf.MODEL,
            },
        )
    return applied


def write_batch_postgresql(lines, durable=True):
    """COPY the lines into the batch table, then, in one round trip (two on psycopg2), the
    statements of the batch: the day locks, the totals' UPDATE (and the counts of deleted objects
    taken out), the history.

    The joins are nested loops over the batch in id order, so the object rows are locked in id
    order whatever the planner would otherwise choose (a hash join locks in table order).
    """
    columns = counted_columns()
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {BATCH_TABLE} (g text, object_id bigint NOT NULL,"
            " day date NOT NULL, n bigint NOT NULL) ON COMMIT DELETE ROWS"
        )
        text = batches.copy_text(lines)
        copy_in(cursor, f"COPY {BATCH_TABLE} ({batches.copy_columns(lines)}) FROM STDIN", text)
        totals = totals_statement(columns)
        statements = [
            # No bitmap scans either: the leaders' threshold reads a day's top in the index's
            # order (a bitmap scan of the day's leaders, then a sort, took 4-7 ms a batch).
            "SELECT set_config('enable_hashjoin', 'off', true),"
            " set_config('enable_mergejoin', 'off', true),"
            " set_config('enable_bitmapscan', 'off', true)"
            + ("" if durable else ", set_config('synchronous_commit', 'off', true)"),
            totals,
        ]
        params = {}
        if WRITE_HISTORY:
            day = batches.only_day(lines, text)
            history, params = history_writer.batch_statements(BATCH_TABLE, day)
            statements[1:1] = [history_writer.lock_statement(BATCH_TABLE, day)]
            statements += history
        if len(connection.atomic_blocks) > 1:
            # Inside an outer transaction (tests): no commit to empty the table for the next.
            statements.append(f"DELETE FROM {BATCH_TABLE}")
        if on_psycopg2():
            # One round trip returns the last statement's rows only (no nextset()): the totals'
            # statement ends the first, the history's statements take a second.
            totals_end = statements.index(totals) + 1
            cursor.execute(";\n".join(statements[:totals_end]), params)
            updated, impressions, dropped, dropped_impressions = cursor.fetchone()
            if statements[totals_end:]:
                cursor.execute(";\n".join(statements[totals_end:]), params)
        else:
            with binding_client_side(cursor) as several:
                several.execute(";\n".join(statements), params)
                while "updated" not in [column.name for column in several.description or []]:
                    several.nextset()
                updated, impressions, dropped, dropped_impressions = several.fetchone()
    return Applied(
        posts_updated=updated,
        impressions_applied=int(impressions),
        posts_dropped=dropped,
        impressions_dropped=int(dropped_impressions),
    )


def on_psycopg2():
    """Whether Django's PostgreSQL backend runs on psycopg2 (it does when psycopg 3 is not
    installed), whose cursors have copy_expert() for copy() and no nextset()."""
    return connection.Database.__name__ == "psycopg2"


@contextmanager
def binding_client_side(cursor):
    """`cursor` (psycopg 3), binding parameters client-side, as Django's default cursors do: for
    several statements with parameters in one query. If it binds them server-side (DATABASES
    OPTIONS "server_side_binding"), a client-side cursor of its connection goes inside its wrapper
    for the while. Server-side binding sends them in PostgreSQL's extended protocol, which takes
    one statement a query: every flush failed ("cannot insert multiple commands into a prepared
    statement"), its counts kept in Redis. The same connection and transaction, and still one
    round trip; and the same wrapper, so that one recording the SQL (DEBUG's, the debug
    toolbar's, an APM's) sees these statements too."""
    client_cursor = connection.Database.ClientCursor
    server_side = cursor.cursor
    if isinstance(server_side, client_cursor):
        yield cursor
        return
    with client_cursor(server_side.connection) as client:
        cursor.cursor = client
        try:
            yield cursor
        finally:
            cursor.cursor = server_side


def copy_in(cursor, sql, text):
    """COPY … FROM STDIN of `text` (bytes) through psycopg 3's copy() or psycopg2's copy_expert().

    Django wraps execute(), not these: the driver's errors become Django's here, so that a line
    the database refuses is a DataError and a dropped connection gets closed."""
    with connection.wrap_database_errors:
        if on_psycopg2():
            cursor.copy_expert(sql, io.BytesIO(text))
            return
        with cursor.copy(sql) as copy:
            copy.write(text)


@contextmanager
def lock_waits_limited():
    """On PostgreSQL, a transaction (transactions.atomic) whose lock waits last
    IMPRESSIONS_FLUSH_LOCK_TIMEOUT at most, as the batches' do, for the ledger's statements outside
    the batches: a lock held open on the ledger's table (a migration's, left in a transaction)
    held them, and so every flush, for as long as it stayed. Elsewhere each statement stays its
    own transaction, as before (MySQL's INSERT IGNORE would keep a shared lock on the row until
    the UPDATE after it: insert_ledger_row)."""
    if connection.vendor != "postgresql":
        yield
        return
    with transactions.atomic(lock_timeout=conf.FLUSH_LOCK_TIMEOUT):
        yield


def totals_statement(columns):
    """Add the batch's counts to the objects' totals; take the rows of objects that no longer
    exist out of the batch (rare: then the history never sees them)."""
    table, pk, count = columns.table, columns.pk, columns.count
    return (
        "WITH totals AS MATERIALIZED ("
        f" SELECT object_id, sum(n) AS n FROM {BATCH_TABLE} GROUP BY object_id"
        " ORDER BY object_id),"
        # coalesce: a nullable count field starts at 0 (NULL + n would stay NULL).
        f" updated AS (UPDATE {table} AS counted SET {count} = coalesce(counted.{count}, 0) + totals.n"
        f" FROM totals WHERE counted.{pk} = totals.object_id"
        " RETURNING totals.object_id, totals.n),"
        " done AS MATERIALIZED (SELECT count(*) AS updated, coalesce(sum(n), 0) AS impressions"
        " FROM updated),"
        f" dropped AS (DELETE FROM {BATCH_TABLE} AS b"
        " WHERE (SELECT count(*) FROM totals) > (SELECT updated FROM done)"
        " AND b.object_id NOT IN (SELECT object_id FROM updated) RETURNING b.object_id, b.n)"
        " SELECT done.updated, done.impressions,"
        " (SELECT count(DISTINCT object_id) FROM dropped) AS dropped,"
        " (SELECT coalesce(sum(n), 0) FROM dropped) AS dropped_impressions FROM done"
    )


def write_batch_portable(lines):
    """Any database: the batch's lines parsed, through the ORM and prepared statements."""
    try:
        rows = batches.parsed(lines)
    except ValueError as error:  # as the COPY of a line PostgreSQL refuses
        raise DataError(f"a snapshot line no database takes: {error}") from error
    totals = {}
    for object_id, _, count in rows:
        totals[object_id] = totals.get(object_id, 0) + count
    columns = counted_columns()
    # Every row, as the UPDATE below: no manager's filter (counted_rows), not even the base
    # manager's (Meta.base_manager_name may name one that hides rows); on the UPDATE's
    # connection, not a read router's replica, which may not have a new row yet.
    rows_here = counted_rows().using(connection.alias)
    existing = set(rows_here.filter(pk__in=list(totals)).values_list("pk", flat=True))
    table, pk, count = columns.table, columns.pk, columns.count
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET {count} = COALESCE({count}, 0) + %s WHERE {pk} = %s",
            [(totals[object_id], object_id) for object_id in sorted(existing)],
        )
    dropped = set(totals) - existing
    applied = Applied(
        posts_updated=len(existing),
        impressions_applied=sum(totals[object_id] for object_id in existing),
        posts_dropped=len(dropped),
        impressions_dropped=sum(totals[object_id] for object_id in dropped),
    )
    if WRITE_HISTORY:
        history_writer.add_batch_portable([row for row in rows if row[0] in existing])
    return applied


@dataclass(frozen=True)
class CountedColumns:
    """Where the counts go: IMPRESSIONS_MODEL's table, its primary key and IMPRESSIONS_COUNT_FIELD."""

    model: type
    table: str  # quoted, as are the columns
    pk: str
    count: str


def counted_columns():
    model = counted_model()
    quote = connection.ops.quote_name
    return CountedColumns(
        model=model,
        table=quote(model._meta.db_table),
        pk=quote(model._meta.pk.column),
        count=quote(model._meta.get_field(conf.COUNT_FIELD).column),
    )


def record_outcome(flush_id, outcome, error="", started_at=None):
    """Note an empty or failed flush in the ledger, never overwriting an applied one."""
    with lock_waits_limited():
        Flush.objects.bulk_create(
            [Flush(id=flush_id, started_at=started_at or started_at_of(flush_id), outcome=outcome)],
            ignore_conflicts=True,
        )
        Flush.objects.filter(id=flush_id).exclude(outcome=Flush.Outcome.APPLIED).update(
            outcome=outcome, finished_at=timezone.now(), error=error[:2000]
        )


def last_applied():
    """The id of this build's newest applied flush in the ledger (by its start), or None."""
    newest = Flush.objects.filter(outcome=Flush.Outcome.APPLIED).order_by("-started_at")
    return next(
        (f for f in newest.values_list("id", flat=True)[:20] if keys.is_own_flush_id(f)), None
    )


# A flush "in progress" this long whose snapshots are gone from Redis will never go on.
ORPHAN_AFTER = timedelta(hours=1)
ORPHAN_ERROR = (
    "its snapshots are gone from Redis (a restart without persistence, a failover or a FLUSHDB):"
    " the batches it committed stay applied, the rest of its counts went with them"
)


def close_orphans(snapshot_ids, now=None):
    """Mark failed the rows in progress for over ORPHAN_AFTER whose flush has no snapshot left
    (`snapshot_ids`: every flush id holding one, read before); returns how many. Should one come
    back (a restore), the next flush still applies it from the row's marks, exactly once.

    Only rows of this build's flush ids (keys.FLUSH_ID): another layout's (a later build's,
    whose snapshots this build does not look for) are that build's to close."""
    # In UTC, in Python: under USE_TZ = False the naive wall clock minus an hour was, in the hour
    # after a spring change (02:30 at 03:30 EDT, read as EST by the database), now, and rows in
    # progress for minutes were closed. The rows in progress are few.
    cutoff = utc(now or timezone.now()) - ORPHAN_AFTER
    running = Flush.objects.filter(outcome=Flush.Outcome.RUNNING)
    stuck = running.exclude(id__in=list(snapshot_ids)).only("id", "started_at")
    own = [
        flush.id
        for flush in stuck
        if keys.is_own_flush_id(flush.id) and started_utc(flush) < cutoff
    ]
    if not own:
        return 0
    return running.filter(id__in=own).update(
        outcome=Flush.Outcome.FAILED, finished_at=timezone.now(), error=ORPHAN_ERROR
    )


def prune_ledger(snapshot_ids):
    """Delete ledger rows older than IMPRESSIONS_LEDGER_RETENTION_DAYS, but those of
    `snapshot_ids` (every flush id holding a snapshot in any shard, of any layout, read before:
    a snapshot made since has a new id); returns how many.

    A row whose snapshot is still in Redis (a month of failed flushes of its shards, a later
    build's left alone) is kept however old: its marks and shards applied are what keeps the
    next flush from applying that snapshot again, from no marks. Its snapshot gone, the next
    flush prunes it."""
    cutoff = timezone.now() - timedelta(days=conf.LEDGER_RETENTION_DAYS)
    # Only what a row's id can be: another layout's ids are whatever a set holds, and one with a
    # NUL (PostgreSQL's text refuses it) would fail the flush here, every time.
    longest = Flush._meta.get_field("id").max_length
    kept = [
        flush_id for flush_id in snapshot_ids if len(flush_id) <= longest and "\0" not in flush_id
    ]
    old = Flush.objects.filter(started_at__lt=cutoff).exclude(id__in=kept)
    deleted, _ = old.delete()
    return deleted
