"""The history's write side: each flush batch's per-day rows, where the roll-up says they go.

A flush batch adds its counts (after the totals' UPDATE, without the objects that no longer
exist) to the open days' rows, or, for an (object, day) the daily roll-up has moved already
(HistoryRollup.is_rolled: an ended day, or the part of the day being rolled), to its daily, week
and month rows at once; then to the site-wide day rows, last. Days before the oldest kept day
(IMPRESSIONS_HISTORY_DAYS) get no history: the roll-up task prunes them.

Locks, so that the roll-up (impressions/rollup.py) and the flushes never see each other's work
half done, and never deadlock: a flush batch holds, for its transaction, a shared advisory lock
on the roll-up's state and one on each day it writes (in day order), taken before the objects'
rows, and reads where the rows go only then. The roll-up takes the state's lock exclusively to
move to the next day (a moment), and a day's lock exclusively to move that day's rows in
batches: only the flush batches holding that day (around midnight) wait for it, one batch at
most. Every history row of an object is written by a transaction holding the object's row
(ledger.py's lock order), the roll-up's excepted, which the day lock keeps apart.

A flush also holds, from its first read of snapshots to its end (many transactions, so in a
transaction of a connection of its own), a shared lock that says a flush is running (`flush_running`): the roll-up starts no batch while one is
held (for a few seconds at most), so that a flush seldom meets a roll-up batch, neither waiting
for its day lock nor sharing the CPU with it.
"""

from contextlib import contextmanager

from django.db import DatabaseError, OperationalError, connection, connections
from django.db.models import F

from redis_endpoints import redacting_logger

from . import periods, stats, transactions
from .conf import conf
from .models import (
    DailyImpressions,
    Flush,
    HistoryRollup,
    OpenDailyImpressions,
    OpenDayLeaders,
    PeriodImpressions,
    SiteDailyImpressions,
)

logger = redacting_logger(__name__)

# pg_advisory_xact_lock's first key for the history's locks says whose tables they guard
# (LOCK_CLASS_SQL); the second is 0 for the roll-up's state, the day's ordinal (date.toordinal)
# for a day, -1 for trimming the leaders, -2 for a flush running (held by a connection of its
# own from the flush's first read of snapshots to its end: flush_running), -3 for a roll-up
# running (rollup_running).
LOCK_CLASS = 0x696D7072  # "impr": the first key where the tables are in the schema public
STATE_LOCK = 0
TRIM_LOCK = -1
FLUSH_LOCK = -2
ROLLUP_LOCK = -3
# The first key, in SQL (a scalar subquery, so evaluated once a statement: a catalog lookup,
# no round trip): the OID of the ledger's table as the search path resolves it, so that
# sites whose tables live in other schemas of one database (each its search_path: two projects,
# the tenants of a schema-per-tenant setup) hold locks of their own; advisory locks are per
# database already. Resolved in each statement, never cached: a tenant's search_path may change
# on the same connection. Tables in the schema public keep LOCK_CLASS, the key of every build
# before: in a rolling deploy, a roll-up of either build and a flush of the other still exclude
# each other there (docs/impressions/counting.md, "Advisory locks, per site"). The schema is
# read from the catalog: looking the table up in public (to_regclass) needs USAGE on public,
# which a tenant's role may not have (REVOKE ALL ON SCHEMA public FROM PUBLIC).
_LEDGER = f'"{Flush._meta.db_table}"'
LOCK_CLASS_SQL = (
    f"(SELECT CASE WHEN c.relnamespace = to_regnamespace('public') THEN {LOCK_CLASS}"
    f" ELSE c.oid::bigint::bit(32)::int END FROM pg_catalog.pg_class AS c"
    f" WHERE c.oid = '{_LEDGER}'::regclass)"
)
# What the locks held by a connection of their own say, for the log (lock_held).
LOCK_NAMES = {
    FLUSH_LOCK: "that says a flush runs (the roll-up starts no batch while it is held)",
    ROLLUP_LOCK: "that says a roll-up runs (the dashboard shows it)",
}
# How long a flush waits to say it runs (flush_running), and PostgreSQL's code of a lock not had.
FLUSH_LOCK_TIMEOUT = "200ms"
LOCK_NOT_AVAILABLE = "55P03"
# The server_version_num from which PostgreSQL has transaction_timeout.
TRANSACTION_TIMEOUT_VERSION = 170000
# A day's ordinal in SQL: date.toordinal() of the same day.
ORDINAL = "({} - DATE '0001-01-01' + 1)"

# The week starts on the ISO Monday, the month on the 1st (as periods.week_of/month_of), in plain
# date arithmetic: no session time zone involved.
PERIOD_STARTS = (
    "VALUES ('w', d.day - (extract(isodow FROM d.day)::int - 1)),"
    " ('m', d.day - (extract(day FROM d.day)::int - 1))"
)


def lock_wait_limit():
    """What bounds a lock wait of the flush's batches and the roll-up's steps, as their errors
    name it."""
    seconds = conf.FLUSH_LOCK_TIMEOUT
    if seconds is None:
        return "the database's lock_timeout (IMPRESSIONS_FLUSH_LOCK_TIMEOUT is None)"
    return f"IMPRESSIONS_FLUSH_LOCK_TIMEOUT ({seconds} s)"


def sqlstate(error):
    """PostgreSQL's code (SQLSTATE) of a Django DatabaseError, whichever driver raised its cause:
    psycopg 3's `sqlstate`, psycopg2's `pgcode`; None for another database's."""
    cause = error.__cause__
    return getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)


def batch_statements(batch_table, day=None):
    """The history statements of a flush batch, as (SQL, params) to run after the totals' UPDATE
    in the batch's transaction (one round trip: statements separated by semicolons). `day`: the
    batch's only day, if the caller knows it has one (then the late counts' statement reads the
    batch only if the roll-up has reached that day).

    First the locks; each statement after them reads the roll-up's row with a snapshot of its
    own, taken once they are held, to send each row where the roll-up says.
    """
    oldest = stats.oldest_kept_day()
    kept = "" if oldest is None else " AND b.day >= %(oldest)s"
    batch = f"{batch_table} AS b LEFT JOIN {table(HistoryRollup)} AS r ON r.id = 1"
    rolled = (
        "coalesce(b.day <= r.rolled_through"
        " OR (b.day = r.rolling_day AND b.object_id <= r.rolling_mark), false)"
    )
    # A batch of one day that the roll-up has not reached has no late counts: checked once
    # (a one-time filter), not on each of its rows.
    reached = (
        ""
        if day is None
        else f" AND EXISTS (SELECT FROM {table(HistoryRollup)} AS s WHERE s.id = 1"
        " AND (%(day)s <= s.rolled_through OR %(day)s = s.rolling_day))"
    )
    statements = [
        # The open rows, and the leaders of their days.
        f"WITH changed AS (INSERT INTO {table(OpenDailyImpressions)} AS h (object_id, day, count)"
        f" SELECT b.object_id, b.day, sum(b.n) FROM {batch} WHERE NOT {rolled}{kept}"
        " GROUP BY b.object_id, b.day ORDER BY b.object_id, b.day"
        " ON CONFLICT (object_id, day) DO UPDATE SET count = h.count + EXCLUDED.count"
        " RETURNING h.object_id, h.day, h.count)" + leaders_sql("changed"),
        # Counts of days rolled up already (late): their daily rows, and their week and month
        # rows at once, as the roll-up moves them (impressions/rollup.py); the day being rolled
        # up keeps its leaders until it is done.
        "WITH late AS MATERIALIZED ("
        f" SELECT b.object_id, b.day, sum(b.n) AS count FROM {batch} WHERE {rolled}{kept}{reached}"
        " GROUP BY b.object_id, b.day ORDER BY b.object_id, b.day),"
        f" daily AS (INSERT INTO {table(DailyImpressions)} AS h (object_id, day, count)"
        " SELECT object_id, day, count FROM late"
        " ON CONFLICT (object_id, day) DO UPDATE SET count = h.count + EXCLUDED.count"
        " RETURNING h.object_id, h.day, h.count),"
        " periods AS ("
        + add_to_periods_sql("late", "true" if oldest is None else "p.start >= %(oldest)s")
        + "),"
        f" changed AS (SELECT d.* FROM daily AS d LEFT JOIN {table(HistoryRollup)} AS r"
        " ON r.id = 1 WHERE NOT coalesce(d.day <= r.rolled_through, false))"
        + leaders_sql("changed"),
        f"INSERT INTO {table(SiteDailyImpressions)} AS h (day, count)"
        f" SELECT b.day, sum(b.n) FROM {batch_table} AS b WHERE true{kept}"
        " GROUP BY b.day ORDER BY b.day"
        " ON CONFLICT (day) DO UPDATE SET count = h.count + EXCLUDED.count",
    ]
    return statements, {"oldest": oldest, "day": day}


def leaders_sql(rows):
    """The end of a WITH statement whose CTE `rows` (object_id, day, count) holds new counts of
    open days: upsert into the day's leaders each row that reaches the day's LEADERS-th leader
    (count descending, ties by id) and is among the LEADERS highest of its batch for the day,
    with its count. Counts only grow, so that keeps every object of the top there with its exact
    count (a row below LEADERS others of its own batch is below them in the day too, so never in
    its top: a batch upserts LEADERS rows a day at most, not one per row while a day's leaders
    are few); the leaders are locked after the history rows, in (day, object) order.

    The rows that reach the threshold come first, then their top: once a day has its LEADERS,
    few of a batch's rows reach them, and only those are sorted (the same rows as the top of
    the batch, then the threshold: the rows that reach it are the top of the batch's order)."""
    leaders = table(OpenDayLeaders)
    top = OpenDayLeaders.LEADERS
    return (
        # Materialized: once a day, never once per row (inlined, the planner may put the
        # LATERAL inside the join with the rows: an index scan each).
        f", thresholds AS MATERIALIZED (SELECT d.day, t.count, t.object_id"
        f" FROM (SELECT DISTINCT day FROM {rows}) AS d LEFT JOIN LATERAL ("
        f" SELECT l.count, l.object_id FROM {leaders} AS l WHERE l.day = d.day"
        f" ORDER BY l.count DESC, l.object_id OFFSET {top - 1} LIMIT 1)"
        " AS t ON true),"
        " candidates AS (SELECT c.* FROM thresholds AS t CROSS JOIN LATERAL ("
        f" SELECT * FROM {rows} AS c WHERE c.day = t.day AND (t.count IS NULL"
        " OR c.count > t.count OR (c.count = t.count AND c.object_id <= t.object_id))"
        f" ORDER BY c.count DESC, c.object_id LIMIT {top}) AS c)"
        f" INSERT INTO {leaders} AS l (day, object_id, count)"
        " SELECT c.day, c.object_id, c.count FROM candidates AS c"
        " ORDER BY c.day, c.object_id"
        " ON CONFLICT (day, object_id) DO UPDATE SET count = EXCLUDED.count"
    )


def trim_leaders():
    """Delete the leaders below each open day's top LEADERS once a day holds twice that many;
    returns how many. One trimmer at a time (the others skip it); it holds the day's lock, as
    the roll-up's steps do, and locks the rows it deletes in (day, object) order, as the flushes
    lock the leaders they upsert."""
    if connection.vendor != "postgresql":
        return 0
    leaders = table(OpenDayLeaders)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT day FROM {leaders} GROUP BY day HAVING count(*) > %s ORDER BY day",
            [2 * OpenDayLeaders.LEADERS],
        )
        days = [row[0] for row in cursor.fetchall()]
    deleted = 0
    for day in days:
        # Its lock waits as long as the flush's batches may, not the database's lock_timeout:
        # a leader row another part's batch holds is held for one batch.
        with (
            transactions.atomic(lock_timeout=conf.FLUSH_LOCK_TIMEOUT),
            connection.cursor() as cursor,
        ):
            cursor.execute(f"SELECT pg_try_advisory_xact_lock({LOCK_CLASS_SQL}, %s)", [TRIM_LOCK])
            if not cursor.fetchone()[0]:
                return deleted
            cursor.execute(
                f"SELECT pg_advisory_xact_lock_shared({LOCK_CLASS_SQL}, %s)", [day.toordinal()]
            )
            cursor.execute(
                # MATERIALIZED: the day's threshold read once. Inlined, a planner without
                # statistics of the day (a new day's first flushes) ran it again for every row
                # of the day: 2,000 index entries each, 5-18 s for a day of 14,000 leaders.
                f"WITH last AS MATERIALIZED (SELECT count, object_id FROM {leaders}"
                " WHERE day = %(day)s"
                f" ORDER BY count DESC, object_id OFFSET {OpenDayLeaders.LEADERS - 1} LIMIT 1),"
                f" below AS (SELECT l.day, l.object_id FROM {leaders} AS l, last"
                " WHERE l.day = %(day)s AND (l.count < last.count"
                " OR (l.count = last.count AND l.object_id > last.object_id))"
                " ORDER BY l.day, l.object_id FOR UPDATE OF l)"
                f" DELETE FROM {leaders} AS l USING below"
                " WHERE l.day = below.day AND l.object_id = below.object_id",
                {"day": day},
            )
            deleted += cursor.rowcount
    return deleted


def lock_statement(batch_table, day=None):
    """Shared locks on the roll-up's state and on each day of the batch table, in that order.
    `day`: the batch's only day, if the caller knows it has one (the table is not read)."""
    days = (
        f"SELECT {ORDINAL.format('%(day)s::date')}"
        if day is not None
        else f"(SELECT DISTINCT {ORDINAL.format('day')} FROM {batch_table} ORDER BY 1)"
    )
    return (
        f"SELECT count(pg_advisory_xact_lock_shared({LOCK_CLASS_SQL}, k)) FROM ("
        f" SELECT {STATE_LOCK} AS k UNION ALL {days}) AS keys"
    )


@contextmanager
def flush_running():
    """Hold FLUSH_LOCK shared while the block runs (PostgreSQL): a flush is running.

    A roll-up holds it exclusively for a moment only, unless it did in a transaction still open
    around this flush (a caller's): the flush then goes unmarked rather than wait for its own
    caller.
    """
    with lock_held(FLUSH_LOCK, timeout=FLUSH_LOCK_TIMEOUT, optional=True):
        yield


@contextmanager
def rollup_running():
    """Hold ROLLUP_LOCK shared while the block runs (PostgreSQL): a roll-up is running, which
    the dashboard reads (rollup_is_running); nothing else takes it. Without a connection for it,
    the roll-up goes on unmarked (the dashboard shows it stopped) rather than fail."""
    with lock_held(ROLLUP_LOCK, optional=True):
        yield


def rollup_is_running():
    """Whether a roll-up holds ROLLUP_LOCK; None where there are no such locks (not PostgreSQL)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        # Read from pg_locks, not tried: a try in the caller's transaction (ATOMIC_REQUESTS)
        # would hold back a roll-up starting meanwhile until the request ends.
        cursor.execute(
            # pg_locks lists every database's: a roll-up of another one is not this one's.
            "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            # Another schema's roll-up (another site's tables) is not this one's either.
            f" AND classid = {LOCK_CLASS_SQL}::oid AND objid = %s::bigint::oid AND objsubid = 2)",
            [ROLLUP_LOCK & 0xFFFFFFFF],
        )
        return cursor.fetchone()[0]


@contextmanager
def lock_held(key, timeout=None, optional=False):
    """Hold the advisory lock `key` shared while the block runs (PostgreSQL), waiting `timeout`
    at most (PostgreSQL's lock_timeout); `optional`: go on without it if it cannot be had in that
    time, or if no connection can be opened to hold it (logged).

    Held by an open transaction of a connection of its own, not at the caller's session's level:
    behind a pooler in transaction mode (PgBouncer, RDS Proxy) each of the caller's transactions
    may run on another server connection, so a session's lock would be taken on one and its
    release sent to another, and it would stay held there. The server lets go of it with that
    transaction, or with the connection if the process dies (killed: the lock says so at once).

    That connection is a new client of the server, or of the pooler: one past its limit
    (max_connections, max_client_conn) is refused, while the caller's own is open. A flush (a
    roll-up) failed for that alone, every one while the limit stood; they go on without the lock.
    """
    if connection.vendor != "postgresql":
        yield
        return
    # The key of the caller's tables: the holder's new session may have another search path
    # (a tenant's is set on the caller's connection, not in the settings).
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {LOCK_CLASS_SQL}")
        lock_class = cursor.fetchone()[0]
    holder = unpooled_connection(connection.alias)
    # It reads and writes no time: no SET of its session's TimeZone, a round trip wherever the
    # server's differs from Django's ("Etc/UTC" and "UTC").
    holder.timezone_name = None
    try:
        try:
            holder.ensure_connection()
        except OperationalError as error:
            if not optional:
                raise
            logger.warning(
                "could not open a connection to hold the lock %s (%s): going on without it",
                LOCK_NAMES.get(key, key),
                error,
            )
        else:
            # One round trip: the statement begins the transaction itself (the connection stays
            # in autocommit, so the driver sends no BEGIN of its own), sets it and takes the lock.
            # Three before (BEGIN, the settings, the lock): a flush's fixed cost.
            with holder.cursor() as cursor:
                try:
                    cursor.execute(holder_statement(lock_class, key, timeout, holder.pg_version))
                except OperationalError as error:
                    if not optional or sqlstate(error) != LOCK_NOT_AVAILABLE:
                        raise
        yield
    finally:
        try:
            if holder.connection is not None:
                # Its own BEGIN, so its own ROLLBACK (psycopg2's rollback() in autocommit sends
                # none): the lock goes now, not whenever the server sees the connection close.
                with holder.cursor() as cursor:
                    cursor.execute("ROLLBACK")
        except DatabaseError:
            pass  # the connection failed: the server lets go of the lock with it
        finally:
            holder.close()


def holder_statement(lock_class, key, timeout=None, server_version=0):
    """What a lock holder sends, in one query: BEGIN, its settings, the shared lock (`lock_class`,
    `key`: whole numbers, written in).

    Its transaction is idle for the whole flush or roll-up by design: an
    idle_in_transaction_session_timeout set for the role or the database (a DBA's 10 s) ended it,
    and the lock with it (the dashboard showed a roll-up running as stopped; the roll-up started
    batches beside a flush), as PostgreSQL 17's transaction_timeout would (turned off on a server
    that has it, `server_version` 170000 on; an older one knows no such parameter); and READ
    COMMITTED, so that it holds no snapshot (at REPEATABLE READ it held the database's xmin
    horizon, vacuum, back for as long). It holds no row: a holder whose process dies goes with
    its connection. `timeout`: its lock wait."""
    statements = [
        "BEGIN ISOLATION LEVEL READ COMMITTED",
        "SET LOCAL idle_in_transaction_session_timeout = 0",
    ]
    if server_version >= TRANSACTION_TIMEOUT_VERSION:
        statements.append("SET LOCAL transaction_timeout = 0")
    if timeout:
        statements.append(f"SET LOCAL lock_timeout = '{timeout}'")
    statements.append(f"SELECT pg_advisory_xact_lock_shared({int(lock_class)}, {int(key)})")
    return "; ".join(statements)


def unpooled_connection(alias):
    """A new connection to database `alias`, outside Django's pool (OPTIONS "pool") if it has one.

    From the pool, the flushes' lock holders could take every connection of it, and each flush
    would then wait for one for its own statements, held by the others (or by itself, with a
    pool of one) until psycopg_pool's timeout failed them all.
    """
    holder = connections.create_connection(alias)
    options = holder.settings_dict["OPTIONS"]
    if options.get("pool"):
        unpooled = {name: value for name, value in options.items() if name != "pool"}
        holder.settings_dict = {**holder.settings_dict, "OPTIONS": unpooled}
    return holder


def add_to_periods_sql(rows, where="true"):
    """INSERT adding `rows` (object_id, day, count) to their week and month rows. Days of one
    object in the same week or month add up first: ON CONFLICT may touch a row once."""
    return (
        f" INSERT INTO {table(PeriodImpressions)} AS h (period, start, object_id, count)"
        f" SELECT p.period, p.start, d.object_id, sum(d.count) FROM {rows} AS d"
        f" CROSS JOIN LATERAL ({PERIOD_STARTS}) AS p(period, start) WHERE {where}"
        " GROUP BY p.period, p.start, d.object_id ORDER BY d.object_id, p.period, p.start"
        " ON CONFLICT (period, start, object_id) DO UPDATE SET count = h.count + EXCLUDED.count"
    )


def add_batch_portable(rows):
    """Any database: [(object id, day, count)] through the ORM. The roll-up's row is locked
    (SQLite lets one writer in at a time anyway)."""
    state = HistoryRollup.objects.select_for_update().filter(id=1).first() or HistoryRollup()
    oldest = stats.oldest_kept_day()
    kept = [row for row in rows if oldest is None or row[1] >= oldest]
    open_rows, rolled = {}, {}
    site = {}
    for object_id, day, count in kept:
        target = rolled if state.is_rolled(day, object_id) else open_rows
        target[object_id, day] = target.get((object_id, day), 0) + count
        site[day,] = site.get((day,), 0) + count
    add_portable(OpenDailyImpressions, ("object_id", "day"), open_rows)
    if rolled:
        add_portable(DailyImpressions, ("object_id", "day"), rolled)
        add_periods_portable(rolled, oldest)
    unrolled = state.rolled_through
    led = list(open_rows) + [key for key in rolled if unrolled is None or key[1] > unrolled]
    update_leaders_portable(led)
    add_portable(SiteDailyImpressions, ("day",), site)


def update_leaders_portable(changed):
    """Any database: the leaders of the days of `changed` [(object id, day)], as leaders_sql."""
    for day in sorted({day for _, day in changed}):
        ids = sorted({object_id for object_id, d in changed if d == day})
        counts = dict(
            OpenDailyImpressions.objects.filter(day=day, object_id__in=ids).values_list(
                "object_id", "count"
            )
        )
        counts.update(
            DailyImpressions.objects.filter(day=day, object_id__in=ids).values_list(
                "object_id", "count"
            )
        )
        leaders = OpenDayLeaders.objects.filter(day=day).order_by("-count", "object_id")
        last = leaders.values_list("count", "object_id")[OpenDayLeaders.LEADERS - 1 :][:1]
        threshold = last[0] if last else None
        top = sorted(ids, key=lambda object_id: (-counts[object_id], object_id))
        for object_id in sorted(top[: OpenDayLeaders.LEADERS]):
            if threshold is None or (-counts[object_id], object_id) <= (
                -threshold[0],
                threshold[1],
            ):
                OpenDayLeaders.objects.update_or_create(
                    day=day, object_id=object_id, defaults={"count": counts[object_id]}
                )


def add_periods_portable(rows, oldest=None):
    """Add {(object id, day): count} to their week and month rows (periods from `oldest` on)."""
    rollups = {}
    for (object_id, day), count in rows.items():
        for key in (
            (periods.WEEK, periods.week_of(day), object_id),
            (periods.MONTH, periods.month_of(day), object_id),
        ):
            if oldest is None or key[1] >= oldest:
                rollups[key] = rollups.get(key, 0) + count
    add_portable(PeriodImpressions, ("period", "start", "object_id"), rollups)


def add_portable(model, key_fields, counts):
    """Any database: add {key tuple: count}, updating the keys that exist and inserting the rest.

    Run inside the flush's transaction; on a database that lets two writers in at once, a key two
    flushes both insert fails one of them, which leaves its snapshot for the next flush.
    """
    if not counts:
        return
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


def table(model):
    return connection.ops.quote_name(model._meta.db_table)
