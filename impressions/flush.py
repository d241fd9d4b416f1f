"""The flush: move pending counts from Redis to the database so each one is applied exactly once.

1. Open the window: the schedule guard goes (once per window, by its first part), so the next
   impression of a shard already snapshotted schedules the next flush.
2. Snapshot the shards of this part (all of them, or 1/K with IMPRESSIONS_FLUSH_PARTS): each
   shard's pending hashes (one per group of posts, keys.GROUPS) are renamed to per-flush keys in
   one atomic step (its slot); new impressions start fresh pending hashes. Where a node has
   replicas, every one of them must have the snapshots before anything is applied
   (wait_for_replicas): else a failover to one that missed them would bring their counts back
   as pending, to be counted again.
3. Apply every snapshot found in those shards (left-overs of crashed flushes first) in batches,
   one database transaction each, gated by the flush id's ledger row (impressions/ledger.py),
   a group of posts while the next is read (read_lines); delete the snapshots only once all of
   them is in the database. Entries that the record script never writes and the database
   refuses are moved out of the way first (set_aside).
A crash anywhere leaves snapshots that the next flush of those shards applies from the ledger's
marks on, or, if the ledger has them whole, drops.
"""

import contextlib
import functools
import secrets
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import hiredis
from django.db import DatabaseError, DataError, IntegrityError, connection
from django.utils import timezone
from redis.exceptions import NoPermissionError, RedisError, ResponseError

from redis_endpoints import demoted_primary, redact_text, redacting_logger

from . import batches, clocks, history_writer, keys, ledger, periods, scripts
from .conf import GUARD_GRACE_SECONDS, MAX_SHARDS, conf, counted_plural
from .exceptions import DatabaseUnavailable, RedisUnavailable
from .loglines import LineLimiter
from .models import Flush
from .redis_client import (
    MAX_ARGS,
    REDIS_FAILURES,
    call_in_slot,
    get_flush_client,
    is_cluster,
    node_of,
    refused_by_slot,
)
from .signals import buffer_went_back, flush_finished, flush_window_lapsed

logger = redacting_logger(__name__)

# How long a flush's count of the shards to read holds (shards_in_use): at most this long after
# a flush found no shard above IMPRESSIONS_SHARDS with counts, the next flush asks them all again.
SHARDS_READ_TTL = 600
# How long a window's key says that its first part has started (a later delivery of one of its
# parts must not delete the next window's guard).
WINDOW_TTL = 24 * 3600
# Seconds after a flush that freed memory before a refused record call may ask for another
# (schedule.FullRedis). A flush that frees nothing leaves the guard's minute: a Redis full of
# what no flush frees (the de-duplication sets) gets one empty flush a minute, not a stream.
SOON_SPACING = 5
# How long a running flush holds the full Redis's flush guard at a time (schedule.FullRedis takes
# it for as long): renewed as the flush goes (SoonGuard), so that no refusal asks for another
# flush while one runs, however long it takes; a flush that dies releases it within this long.
SOON_HOLD = 60


@dataclass
class FlushReport:
    flush_id: str
    outcome: str = Flush.Outcome.EMPTY
    posts_updated: int = 0
    impressions_applied: int = 0
    posts_dropped: int = 0
    impressions_dropped: int = 0
    recovered: list[str] = field(default_factory=list)  # flush ids of snapshots left behind
    duration: float = 0.0  # seconds
    part: int = 0  # this flush's part of the shards, of `parts`
    parts: int = 1
    counters_set_aside: int = 0  # snapshot entries no database takes (set_aside)

    def add(self, applied):
        self.posts_updated += applied.posts_updated
        self.impressions_applied += applied.impressions_applied
        self.posts_dropped += applied.posts_dropped
        self.impressions_dropped += applied.impressions_dropped

    def as_dict(self):
        return {**asdict(self), "outcome": str(self.outcome)}

    def __str__(self):
        objects = counted_plural()
        text = (
            f"flush {self.flush_id}: {self.impressions_applied} impressions applied to"
            f" {self.posts_updated} {objects} in {self.duration:.3f} s"
        )
        if self.parts > 1:
            text += f" (part {self.part + 1} of {self.parts})"
        if self.posts_dropped:
            text += (
                f"; {self.impressions_dropped} dropped for {self.posts_dropped} deleted {objects}"
            )
        if self.counters_set_aside:
            text += f"; {self.counters_set_aside} malformed counters set aside"
        if self.recovered:
            text += f"; recovered snapshots of {', '.join(self.recovered)}"
        return text


# Fields a snapshot read asks Redis for in one call (HSCAN's COUNT, a hint): a few ms of Redis.
READ_CHUNK = 2000
# Fields a set-aside call moves at most (scripts.SET_ASIDE): 1,006 arguments, within
# redis_client.MAX_ARGS.
SET_ASIDE_CHUNK = 1000
# Full reads of a snapshot that come short of its HLEN before the flush gives up (read_snapshot).
READ_ATTEMPTS = 3


def checkpoint(name):
    """A no-op at named points of a flush; tests replace it to crash or pause right there."""


def new_flush_id():
    # UTC whatever USE_TZ says: ledger.started_at_of reads it back as UTC.
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


def part_shards(part, parts):
    """The shards of part `part` of `parts`: every parts-th one from `part` on."""
    if not 0 <= part < parts:
        raise ValueError(f"part {part} is not one of {parts} parts")
    return list(range(part, conf.SHARDS, parts))


def flush_pending(
    batch_size=None, keep_schedule=False, *, part=0, parts=1, window=None, other_buffer=False
):
    """Flush now (the shards of `part` of `parts`); returns a FlushReport, raises FlushError
    when Redis or the database fails.

    `window`: the token of the scheduled window this part belongs to (tasks.enqueue_flush); the
    first part of a window to start deletes the schedule guard, the others leave it. None (the
    command): delete it. `keep_schedule` (a flush asked for by hand): a flush already scheduled
    stays scheduled, and takes what is recorded after this one, so the impressions that follow
    need no flush of their own (and the dashboard's "next flush" stays true). `other_buffer`
    (the command's --key-prefix, --redis-url): a buffer this ledger's flushes never marked, whose
    mark says nothing of this one (check_buffer_mark is skipped).

    A flush that a failover's demoted primary refused (a write of it) is run again at once, as
    a task's retry would run it: a flush is safe to repeat; its client's connections reconnect
    (redis_endpoints.reconnect_when_demoted) and reach the new primary.
    """
    attempt = functools.partial(
        flush_attempt,
        batch_size,
        keep_schedule,
        part=part,
        parts=parts,
        window=window,
        other_buffer=other_buffer,
    )
    try:
        return attempt()
    except RedisUnavailable as error:
        if not demoted_primary(error.__cause__):
            raise
        client = get_flush_client()  # the attempt's, built already
        if is_cluster(client):
            raise
    client.connection_pool.disconnect(inuse_connections=False)  # idle, to the same server
    return attempt()


def flush_attempt(
    batch_size=None, keep_schedule=False, *, part=0, parts=1, window=None, other_buffer=False
):
    """One flush_pending(), once."""
    batch_size = batch_size or conf.FLUSH_BATCH_SIZE
    part_shards(part, parts)  # a part that is none of `parts` raises ValueError
    report = FlushReport(flush_id=new_flush_id(), part=part, parts=parts)
    started = time.monotonic()
    # The ledger's start time, to the microsecond: the id has whole seconds, so the ledger's
    # duration of this flush would be off by up to one.
    started_at = timezone.now()
    try:
        with RunningLock() as running:
            client = get_flush_client()
            soon_guard = SoonGuard(client)
            # Counts without a day (snapshots left by a version before the history) count today.
            today = periods.day_of(timezone.now())
            # This worker dates the ledger and the roll-up's today; a window's lateness is told
            # on the clock its guard was taken by (Redis's).
            note = open_flush(client, KEEP if keep_schedule else window, report.flush_id)
            every = shards_in_use(client, note)
            shards = [shard for shard in every if shard % parts == part]
            nodes = take_snapshots(client, report.flush_id, shards, every)
            wait_for_replicas(nodes)
            checkpoint("after-snapshot")
            others = set()  # flush ids of other layouts' snapshots: their rows are kept too
            by_flush, own_sizes = snapshots_by_flush(
                client, others, every, sizes_of=(report.flush_id, shards)
            )
            mine = [f for f, found in by_flush.items() if set(found) & set(shards)]
            ready = False  # before_applying() has run

            def before_applying():
                """Once, while the first read goes on in its thread (the first batch waits for
                it anyway): the holder, the buffer's mark, the ledger's upkeep. The database's
                first use: after the snapshots (a worker's threads share a pool of
                connections), and before any batch commits."""
                # Held once Redis has answered: unreachable, the snapshot fails the flush at once.
                soon_guard.hold()
                running.hold()
                if not other_buffer:
                    check_buffer_mark(client, report.flush_id)
                keep_ledger(by_flush, others)

            # Left-overs first, oldest first: they hold the oldest counts. A left-over is applied
            # whole, every shard of it, whichever part finds it.
            for flush_id in sorted(mine, key=lambda f: (f == report.flush_id, f)):
                found = by_flush[flush_id]
                # Its own snapshots start at its part's place; a left-over's, where its row says
                # (or at the first line).
                own_part = part if flush_id == report.flush_id else 0
                applied = ledger.Applied()
                apply = functools.partial(
                    ledger.apply_snapshots,
                    flush_id,
                    batch_size=batch_size,
                    recovered_by="" if flush_id == report.flush_id else report.flush_id,
                    before_commit=lambda: checkpoint("before-commit"),
                    after_commit=lambda: (soon_guard.hold(), checkpoint("after-batch")),
                    started_at=started_at if flush_id == report.flush_id else None,
                    part=own_part,
                    parts=parts,
                    applied=applied,
                )
                lines = read_lines(
                    client,
                    flush_id,
                    found,
                    today,
                    report,
                    part=own_part,
                    parts=parts,
                    sizes=own_sizes if flush_id == report.flush_id else None,
                )
                try:
                    if not ready:
                        before_applying()
                        ready = True
                    checkpoint("before-apply")
                    try:
                        apply(lines)
                    except (DataError, IntegrityError):
                        # A batch the database refused (its transaction rolled back): an entry
                        # that the record script never writes? Read the snapshots again, each
                        # entry checked; set those aside, apply the rest from the marks on
                        # (refused again: something else, raised).
                        lines.close()
                        lines = read_lines(client, flush_id, found, today, report, check=True)
                        checkpoint("after-set-aside")
                        apply(lines)
                finally:
                    lines.close()
                    # What committed is this flush's to report, even if it fails from here:
                    # whoever applies these snapshots next skips those batches (the ledger).
                    report.add(applied)
                checkpoint("after-commit")
                drop_snapshots(client, flush_id, found)
                if flush_id != report.flush_id:
                    report.recovered.append(flush_id)
            if mine:
                report.outcome = Flush.Outcome.APPLIED
                soon_guard.release()
            if not ready:  # no snapshot to apply
                before_applying()
            if report.flush_id not in by_flush:
                ledger.record_outcome(report.flush_id, Flush.Outcome.EMPTY, started_at=started_at)
            history_writer.trim_leaders()
    except REDIS_FAILURES as error:
        _note_failure(report.flush_id, error, started_at)
        flush_finished.send(
            flush_pending, report=report, duration=time.monotonic() - started, error=error
        )
        # The server too: an AuthenticationError or "DB index is out of range" names neither.
        raise RedisUnavailable(
            f"Redis failed during flush {report.flush_id}{applied_before(report)}, at"
            f" IMPRESSIONS_REDIS_URL ({redact_text(conf.REDIS_URL)}): {redact_text(str(error))}"
        ) from error
    except DatabaseError as error:
        if not connection.in_atomic_block:
            connection.close()  # reconnect on the next flush instead of reusing a dead socket
        flush_finished.send(
            flush_pending, report=report, duration=time.monotonic() - started, error=error
        )
        raise DatabaseUnavailable(
            f"the database failed during flush {report.flush_id}{applied_before(report)};"
            " its counts not applied stay in Redis for the next flush:"
            f" {database_hint(error)}{redact_text(str(error))}"
        ) from error
    report.duration = time.monotonic() - started
    logger.info("%s", report, extra={"flush": report.as_dict()})
    flush_finished.send(flush_pending, report=report, duration=report.duration, error=None)
    return report


class RunningLock(contextlib.ExitStack):
    """history_writer.flush_running(), taken at the first hold() and held until the block ends.

    A flush takes it once its first read of snapshots is under way (read_lines), in that read's
    shadow: its holder's connection is a new server session (4-5 ms of a flush's fixed cost),
    and the roll-up needs to know before the flush writes the database, not while it snapshots
    Redis."""

    held = False

    def hold(self):
        if not self.held:
            self.enter_context(history_writer.flush_running())
            self.held = True


def keep_ledger(by_flush, others):
    """The ledger's upkeep, once a flush: close the orphans, prune the old rows, but those of the
    snapshots found before anything is applied (`by_flush`, `others`). Done before the first
    batch, while the first read of snapshots goes on (the batch waits for it): 3-4 ms of
    statements off the end of a flush, where nothing hid them. A database error here fails the
    flush before it applies anything (its counts stay in Redis); so does a lock it waits for
    longer than IMPRESSIONS_FLUSH_LOCK_TIMEOUT (ledger.lock_waits_limited)."""
    with ledger.lock_waits_limited():
        ledger.close_orphans(by_flush)
        ledger.prune_ledger({*by_flush, *others})


def applied_before(report):
    """What a failed flush committed before it failed (its report counts it, the next flush
    does not), if anything."""
    if not report.impressions_applied:
        return ""
    return f" after applying {report.impressions_applied} impressions"


def database_hint(error):
    """What a database error with a cause outside the flush means here, and what to change,
    before the database's own words ("canceling statement due to lock timeout"); else nothing.
    Read from the SQLSTATE, not the words (lc_messages may translate them)."""
    code = history_writer.sqlstate(error)
    hint = DATABASE_HINTS.get(code)
    if code == history_writer.LOCK_NOT_AVAILABLE:
        hint = hint.format(within=history_writer.lock_wait_limit())
    return f"{hint}; " if hint else ""


# PostgreSQL's codes (SQLSTATE) of a statement canceled (statement_timeout, a cancel request),
# of a deadlock it ended, of a write refused by a server, or a session, that only reads, and of a
# privilege the role lacks.
QUERY_CANCELED = "57014"
DEADLOCK_DETECTED = "40P01"
READ_ONLY_SQL_TRANSACTION = "25006"
INSUFFICIENT_PRIVILEGE = "42501"
# SQLSTATE -> the hint database_hint() gives.
DATABASE_HINTS = {
    history_writer.LOCK_NOT_AVAILABLE: (
        "a lock was not granted within {within}: another transaction holds a row this flush"
        " updates, or the ledger row of a snapshot it applies (another flush applying it,"
        " stalled), or a lock on one of its tables (a migration's ALTER TABLE or CREATE INDEX,"
        " a LOCK TABLE); pg_stat_activity shows it, perhaps 'idle in transaction'"
    ),
    QUERY_CANCELED: (
        "a statement was canceled: by the statement_timeout of the database or of its role"
        " (ALTER DATABASE/ROLE … SET statement_timeout; SHOW statement_timeout says it), which a"
        " batch takes longer than: every flush stops at the same batch until it is raised for"
        " the workers' role, or IMPRESSIONS_FLUSH_BATCH_SIZE is lowered; or by a cancel request"
        " (pg_cancel_backend, the worker's job timeout)"
    ),
    DEADLOCK_DETECTED: (
        "a deadlock with another transaction, which PostgreSQL ended with this batch: the flush"
        " locks the counted rows in id order, and a transaction that locks several of them in"
        " another order (the site's own: updates one by one, select_for_update() without"
        " order_by('pk')) can deadlock with it; lock them in id order"
    ),
    READ_ONLY_SQL_TRANSACTION: (
        "the database takes no writes here: the DATABASES entry (DATABASE_URL) leads to a"
        " replica or a reader endpoint, or to a primary in the middle of a failover, or"
        " default_transaction_read_only is set for the role or database; it must lead to the"
        " primary (each flush connects anew after this error)"
    ),
    INSUFFICIENT_PRIVILEGE: (
        "the database refused a privilege to the role the flush connects as: it needs TEMPORARY"
        " on the database (each batch copies its lines into a temporary table: GRANT TEMPORARY"
        " ON DATABASE … TO …) and SELECT, INSERT, UPDATE, DELETE on the impressions tables"
        " (SELECT, UPDATE on the counted model's), those of later migrations included (ALTER"
        " DEFAULT PRIVILEGES); `manage.py check --database default`, run as that role, names"
        " each one missing (impressions.W010, impressions.W011)"
    ),
}


def check_buffer_mark(client, flush_id):
    """Raise the buffer's flush mark (keys.flush_mark_key) to `flush_id`, and say so (an ERROR,
    the signal buffer_went_back) when the mark it held was missing or older than the ledger's
    newest applied flush: the buffer was emptied (its pending counts lost) or went back in time
    (a restore, a restart from an older RDB, a failover to a replica behind: counts applied
    since may count again). Once an event: the mark is raised.

    Every flush raises the mark after its snapshots and before its first batch commits, and
    reads the ledger before the mark: a flush that sees another's row applied sees its mark.
    Ids are compared by their second (two of one second sort by their random part). A Redis
    that refuses the write (full, an ACL) skips the check."""
    newest = ledger.last_applied()
    try:
        mark = client.execute_command(
            "EVAL", scripts.FLUSH_MARK, 1, keys.flush_mark_key(), flush_id
        )
    except ResponseError:
        logger.debug("could not raise the buffer's flush mark", exc_info=True)
        return
    mark = mark.decode() if isinstance(mark, bytes) else mark
    if newest is None:
        return
    if mark is None:
        kind = "emptied"
        logger.error(
            "the buffer's Redis holds no mark of any flush, though flush %s applied counts:"
            " it was emptied since (a restart without persistence, a FLUSHDB, a data loss; or"
            " this is its first flush since an upgrade to a version that marks it): the"
            " impressions pending then were lost",
            newest,
            extra={"buffer_went_back": kind, "last_applied": newest, "buffer_mark": None},
        )
    elif keys.is_own_flush_id(mark) and mark[:15] < newest[:15]:
        kind = "restored"
        logger.error(
            "the buffer's Redis went back in time: its last flush mark is %s, older than flush"
            " %s, which applied counts since (a restore of a backup, a restart from an older"
            " RDB or AOF, a failover to a replica that was behind): the impressions pending"
            " then that flush took count again",
            mark,
            newest,
            extra={"buffer_went_back": kind, "last_applied": newest, "buffer_mark": mark},
        )
    else:
        return
    buffer_went_back.send_robust(
        check_buffer_mark, kind=kind, last_applied=newest, buffer_mark=mark
    )


def _note_failure(flush_id, error, started_at):
    try:
        ledger.record_outcome(
            flush_id,
            Flush.Outcome.FAILED,
            f"{type(error).__name__}: {redact_text(str(error))}",
            started_at,
        )
    except DatabaseError:
        logger.warning("could not note failed flush %s in the ledger", flush_id, exc_info=True)


class SoonGuard:
    """Holds the full Redis's flush guard (keys.flush_soon_key), if a refused record call took it,
    for as long as this flush runs: SOON_HOLD seconds from each hold(), renewed once a quarter of
    that has passed (once it has its snapshots, and between batches). EXPIRE adds no memory, so
    a full Redis takes it, and changes nothing when the key is not there: a flush takes no guard
    of its own. A flush that dies stops renewing it, and the next refusal asks again within
    SOON_HOLD; one that freed memory shortens it to SOON_SPACING (release)."""

    def __init__(self, client, clock=time.monotonic):
        self.client, self.clock = client, clock
        self.held_at = None

    def hold(self):
        now = self.clock()
        if self.held_at is not None and now - self.held_at < SOON_HOLD / 4:
            return
        self.held_at = now
        self._expire(SOON_HOLD, "hold")  # failing, it lapses: a refusal may ask again, exact

    def release(self):
        """This flush freed memory: the flush a refused record call asked for, if any, is done
        or needless; the next refusal may ask again SOON_SPACING seconds from now."""
        self._expire(SOON_SPACING, "shorten")  # failing, its TTL releases it anyway

    def _expire(self, seconds, what):
        try:
            self.client.expire(keys.flush_soon_key(), seconds)
        except REDIS_FAILURES:
            logger.warning("could not %s the full Redis's flush guard", what, exc_info=True)


# A window that keep_schedule leaves alone (open_flush).
KEEP = object()


def open_flush(client, window, flush_id):
    """What a flush asks Redis first, in one round trip (their keys share a slot): its time
    (clocks.measured), the window opened (window_command; none for `window` KEEP), the note of the
    shards read, returned for shards_in_use. Three round trips before, one after the other."""
    pipe = client.pipeline(transaction=False)
    pipe.execute_command(*clocks.time_command())
    if window is not KEEP:
        pipe.execute_command(*window_command(window))
    pipe.get(keys.shards_read_key())
    sent_at = time.time()
    replies = pipe.execute()
    redis_now = clocks.measured(sent_at, replies[0])
    if window is not KEEP:
        window_opened(replies[1], window, flush_id, redis_now)
    return replies[-1]


def window_command(window):
    """The command that opens `window`: delete the schedule guard, so that from here on a new
    impression schedules the next flush (the guard and the window's keys share a slot).

    A window's parts share a token: only the first of them to start deletes the guard, so that
    a part starting late (or delivered twice) leaves the next window's guard alone; and only the
    guard its window was enqueued under (tasks.enqueue_flush), so that a window's job run long
    after its guard lapsed (left on a queue no worker served after a deploy, run at last) leaves
    alone the guard of the window scheduled since, whose job would otherwise delete the next
    one's in turn: two flushes a window from then on. That first part, started after its guard
    lapsed, says so (window_opened)."""
    if window is None:
        return ("DEL", keys.guard_key(), keys.scheduled_window_key())
    return (
        "EVAL",
        scripts.OPEN_WINDOW,
        3,
        keys.guard_key(),
        keys.window_key(window),
        keys.scheduled_window_key(),
        WINDOW_TTL,
        window,
    )


def window_opened(opened, window, flush_id="", now=None):
    """What the first part of a window says once window_command's reply `opened` is in: started
    after its guard lapsed (late_windows), the flush ran more than IMPRESSIONS_FLUSH_DELAY + 60 s
    after it was scheduled. `now`: Redis's time (the guard's value is too), default this host's."""
    if window is None:
        return
    if opened in (2, 3):  # its guard gone: lapsed, or deleted by a flush of no window
        now = time.time() if now is None else now
        try:
            since = now - float(window.partition("@")[2])
        except ValueError:
            return
        # A lapse is at least GUARD_GRACE_SECONDS late; half of it allows for the guard's value
        # of a build before this one (this host's clock, on a cluster).
        if since > conf.FLUSH_DELAY + GUARD_GRACE_SECONDS / 2:
            late_windows.started(flush_id, since)
            # Robust, as tasks.lost_window: a metric's failure fails no flush (logged by Django).
            flush_window_lapsed.send_robust(open_flush, seen_by="flush", scheduled_at=now - since)


class LateWindows(LineLimiter):
    """The warning that a scheduled flush started after its guard lapsed: one line a minute at
    most for each process (a worker back after an outage runs a queued window after another),
    saying how many more there were since the last."""

    INTERVAL = 60.0

    def __init__(self, clock=time.monotonic):
        super().__init__(self.INTERVAL, clock)

    def started(self, flush_id, since):
        said = self.note("late")
        if said is None:
            return
        more = said[0] - 1
        logger.warning(
            "flush %s started %s after its window was scheduled, past its schedule guard"
            " (IMPRESSIONS_FLUSH_DELAY + %d s): its task waited in the queue, no worker taking it"
            " or the workers behind; meanwhile the counts waited in Redis (a view after the guard"
            " lapsed schedules another flush). Check that runworker runs and keeps up with the"
            " queue%s",
            flush_id,
            f"{since:.0f} s",
            GUARD_GRACE_SECONDS,
            f" ({more} more such flush{'es' if more > 1 else ''} in this process since the last"
            " such line)"
            if more
            else "",
            extra={"late_flush": flush_id, "late_by": since, "late_flushes_unsaid": more},
        )


late_windows = LateWindows()


# The note of the shards read, not read yet (shards_in_use).
UNREAD = object()


def shards_in_use(client, note=UNREAD):
    """The shards a flush reads: IMPRESSIONS_SHARDS's, then any shard above them that holds
    pending counts or snapshots (EXISTS of a shard's pending keys and snapshots set, all in its
    slot, in one round trip per node).

    Those were written with a larger IMPRESSIONS_SHARDS: counts recorded before it was lowered,
    a killed flush's snapshot, or the impressions that web processes of the deployment before
    still record there while a rolling deploy goes on. Read only up to the setting, they would
    wait unseen until it was raised again (and a snapshot's ledger row, pruned meanwhile, would
    no longer keep it from being applied twice); so they are flushed with the others, and the
    flush says so (a warning each time it finds any).

    Asking every shard up to MAX_SHARDS costs about 2 ms on a standalone server (shards_holding),
    several times that on a cluster (1,008 EXISTS at 16 shards): a flush does it when
    keys.shards_read_key() is missing, and sets it to how many shards there are to read
    (IMPRESSIONS_SHARDS, or one more than the highest found), for SHARDS_READ_TTL; until it
    expires, flushes ask only the shards below it (none, unless a flush of a larger
    IMPRESSIONS_SHARDS ran meanwhile, or found some). So what a process of a larger setting
    records in a shard above, after a flush found nothing there, waits until the key expires:
    at most SHARDS_READ_TTL more. `note`: that key's value, if read already (open_flush)."""
    key = keys.shards_read_key()
    known = _whole_or_none(client.get(key) if note is UNREAD else note)
    top = MAX_SHARDS if known is None else min(max(known, conf.SHARDS), MAX_SHARDS)
    above = range(conf.SHARDS, top)
    found = shards_holding(client, list(above))
    reach = max(conf.SHARDS, found[-1] + 1 if found else 0)
    try:
        if known is None:
            client.set(key, reach, ex=SHARDS_READ_TTL, nx=True)
        elif reach > known:
            client.set(key, reach, keepttl=True, xx=True)  # expired meanwhile: asked again
    except ResponseError as error:  # a full Redis (maxmemory) refuses it: asked again next time
        logger.debug("could not note the shards read: %s", error)
    if found:
        logger.warning(
            "found pending counts or snapshots in %d shard%s above IMPRESSIONS_SHARDS=%d (%s):"
            " written with a larger IMPRESSIONS_SHARDS (before it was lowered, or by processes"
            " of an earlier deployment still recording); flushed with the others",
            len(found),
            "" if len(found) == 1 else "s",
            conf.SHARDS,
            ", ".join(map(str, found[:10])) + (", …" if len(found) > 10 else ""),
        )
    return [*range(conf.SHARDS), *found]


def shards_holding(client, shards, each=None):
    """The shards of `shards` that hold any of keys.holding_keys, in one round trip per node: an
    EXISTS of `each` shards' keys at a time. A standalone server holds every shard: the keys of
    as many shards as MAX_ARGS allows in each (the usual answer, none: 4 of them for the 1,008
    shards above 16, where an EXISTS a shard took 12 ms of the client's CPU), then a shard at a
    time only where one says some are held. A cluster spreads the shards over slots: one a
    shard (its pipeline's own Python makes that ask several times as long)."""
    if each is None:
        each = 1 if is_cluster(client) else (MAX_ARGS - 1) // len(keys.holding_keys(0))
    chunks = [shards[at : at + each] for at in range(0, len(shards), each)]
    if each > 1:
        replies = ask_packed(client, packed_exists(conf.KEY_PREFIX, tuple(map(tuple, chunks))))
    else:
        pipe = client.pipeline(transaction=False)
        for chunk in chunks:
            pipe.exists(*keys.holding_keys(chunk[0]))
        replies = pipe.execute()
    found = []
    for chunk, held in zip(chunks, replies, strict=True):
        if held:
            found += chunk if len(chunk) == 1 else shards_holding(client, chunk, each=1)
    return found


@functools.lru_cache(maxsize=16)
def packed_exists(prefix, chunks):
    """(the EXISTS of each of `chunks` (tuples of shards) of their keys.holding_keys, in Redis's
    protocol, how many): built once per (prefix, chunks), where redis-py packed the 14,112
    arguments anew at each ask, most of its 7-8 ms of the client's CPU. `prefix`:
    conf.KEY_PREFIX, which keys the cache."""
    commands = (
        hiredis.pack_command(
            ("EXISTS", *(key for shard in chunk for key in keys.holding_keys(shard)))
        )
        for chunk in chunks
    )
    return b"".join(commands), len(chunks)


def ask_packed(client, packed):
    """The replies of `packed` (packed_exists) on a standalone server, in one round trip on one
    of the client's connections, as a pipeline sends them; an error reply raises."""
    commands, count = packed
    pool = client.connection_pool
    asking = pool.get_connection()
    try:
        asking.send_packed_command([commands])
        return [asking.read_response() for _ in range(count)]
    except BaseException:
        asking.disconnect()  # replies left unread: no other call may take them for its own
        raise
    finally:
        pool.release(asking)


def _whole_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def take_snapshots(client, flush_id, shards, every=None):
    """Rename the pending hash of each of `shards` to this flush's snapshot: one round trip per
    node (EVAL by name: a cluster pipeline runs no registered script), which first asks each
    node that serves a shard for its replicas (ROLE; on a cluster, CLUSTER NODES too): before, so
    that a replica that drops out while the snapshots go is waited for, and missed. Returns
    [Node] of those nodes.

    A shard whose slot is migrating to another node (a cluster scaling: ElastiCache Serverless)
    refuses its snapshot until the slot has moved (TRYAGAIN: some of its keys on each node):
    sent again until it goes through, within IMPRESSIONS_FLUSH_REDIS_TIMEOUT (in_slots). Should
    the slot have moved to a node not asked for its replicas, the flush stops there: its
    snapshot stays for the next flush, which asks."""
    pipe = client.pipeline(transaction=False)
    nodes = shard_nodes(client)
    for node in nodes:
        pipe.execute_command("ROLE", **node.target)
    node_replies = len(nodes)
    if is_cluster(client):
        node_replies += len(nodes)
        # A replica whose link dropped is no more in ROLE, but still the cluster's replica of
        # that node: promoted before it has caught up, it would bring back what it missed.
        for node in nodes:
            pipe.execute_command("CLUSTER NODES", **node.target)
    commands = [snapshot_command(shard, flush_id) for shard in shards]
    for command in commands:
        pipe.execute_command(*command)
    replies = pipe.execute(raise_on_error=False)
    in_slots(client, shards, commands, replies[node_replies:])
    if is_cluster(client):
        # Where each snapshot went, as the client's map of the slots learnt (MOVED): a snapshot
        # runs only on the node serving its slot (the importing one refuses it, TRYAGAIN: the
        # snapshot's keys are not there yet).
        asked = {node.target["target_nodes"].name for node in nodes}
        for shard in shards:
            went_to = node_of(client, keys.pending_key(shard))
            if went_to is None or went_to.name not in asked:
                raise RedisError(
                    f"the slot of shard {shard} moved to {went_to and went_to.name} during the"
                    " snapshots, a node whose replicas the flush did not ask for: the snapshot"
                    " stays for the next flush"
                )
    cluster_views = replies[len(nodes) : node_replies] or [None] * len(nodes)
    for node, role, view in zip(nodes, replies[: len(nodes)], cluster_views, strict=True):
        node.replicas = max(replicas_of(role, node), cluster_replicas_of(view))
    return nodes


def snapshot_command(shard, flush_id):
    return (
        "EVAL",
        scripts.SNAPSHOT,
        7 + 2 * len(keys.GROUPS),
        keys.pending_key(shard),
        keys.snapshot_key(shard, flush_id),
        keys.snapshots_key(shard),
        keys.armed_key(shard),
        keys.pending_days_key(shard),
        keys.snapshot_days_key(shard, flush_id),
        keys.totals_key(shard),
        *keys.pending_group_keys(shard),
        *keys.snapshot_group_keys(shard, flush_id),
        flush_id,
        keys.snapshot_prefix(shard),
    )


def in_slots(client, shards, commands, replies):
    """The `commands` of `shards` again whose pipeline `replies` are errors: where that is the
    refusal of a slot that moves (refused_by_slot: the script did not run), on the node serving
    the slot, waiting out its migration (redis_client.call_in_slot); another error raises."""
    for shard, command, reply in zip(shards, commands, replies, strict=True):
        if not isinstance(reply, Exception):
            continue
        if not (is_cluster(client) and refused_by_slot(reply)):
            raise reply
        call_in_slot(client, keys.pending_key(shard), command)


@dataclass
class Node:
    """A Redis primary serving some shards (all of them: a standalone Redis)."""

    client: object  # a redis.Redis client of that node alone
    shard: int  # one of its shards: replicated_key(shard) is on that node
    target: dict = field(default_factory=dict)  # how a cluster pipeline sends it a keyless command
    replicas: int = 0  # to wait for: connected (ROLE), or the cluster's and not failed


def shard_nodes(client, shards=None):
    """[Node] of the primaries that serve a shard (of `shards`, by default IMPRESSIONS_SHARDS's),
    each once: their replicas must have every snapshot a flush applies, left-overs of other parts
    too (applied whole)."""
    if not is_cluster(client):
        return [Node(client, 0)]
    nodes = {}
    for shard in range(conf.SHARDS) if shards is None else shards:
        node = node_of(client, keys.pending_key(shard))
        if node.name not in nodes:
            target = {"target_nodes": node}
            nodes[node.name] = Node(client.get_redis_connection(node), shard, target)
    return list(nodes.values())


# Error replies of a server that does not take ROLE or WAIT (ElastiCache Serverless has no
# replicas of its own to wait for; a managed server or an ACL may refuse either): the flush goes
# on as it would without replicas, and says so once per process and command.
REFUSALS = (
    "unknown command",
    "unknown subcommand",
    "not supported",
    "unsupported",
    "noperm",
    "disabled",
)
_refused = set()


def refused(command, reply):
    """Whether `reply` is the server's refusal of `command` (logged once); raises any other
    error it is."""
    if not isinstance(reply, Exception):
        return False
    if not is_refusal(reply):
        raise reply
    if command not in _refused:
        _refused.add(command)
        logger.warning(
            "the buffer's Redis refuses %s (%s): the flush applies its snapshots without"
            " knowing that the replicas have them; a failover to a replica that missed one would"
            " count its impressions twice (docs/impressions/counting.md)",
            command,
            reply,
        )
    return True


def is_refusal(reply):
    # redis-py reads an ACL's NOPERM as a NoPermissionError, its text without the code.
    said = isinstance(reply, ResponseError) and any(r in str(reply).lower() for r in REFUSALS)
    return said or isinstance(reply, NoPermissionError)


def replicas_of(role, node):
    """The replicas that a primary's ROLE reply lists (connected, in sync or not yet). A node
    that is no primary any more (a cluster's failover, the client's map of the slots not yet
    updated) fails the flush: the replicas of the one that took the snapshots are not known."""
    if refused("ROLE", role):
        return 0
    kind = role[0].decode() if isinstance(role[0], bytes) else str(role[0])
    if kind != "master":
        raise RedisError(f"{node_name(node)} is a {kind} now, no primary: flush again")
    return len(role[2])


def cluster_replicas_of(view):
    """The replicas that a cluster node's CLUSTER NODES reply (parsed by redis-py) gives it,
    connected or not, but those the cluster holds failed (dead: none of them can be promoted);
    0 without a reply (a standalone server, or a refusal)."""
    if view is None:
        return 0
    if isinstance(view, Exception):
        if is_refusal(view):  # ROLE's count stands: the replicas connected
            return 0
        raise view
    me = next((n["node_id"] for n in view.values() if "myself" in n["flags"]), None)
    return sum(
        1
        for n in view.values()
        if n["master_id"] == me and not {"fail", "noaddr"} & set(n["flags"].split(","))
    )


class ReplicasBehind(RedisError):
    """A node's replicas did not all acknowledge the snapshots in time."""


def wait_for_replicas(nodes):
    """Return once every replica of each of `nodes` has the writes made there so far (the
    snapshots of this flush and of those before it); raise ReplicasBehind if one does not say
    so within IMPRESSIONS_FLUSH_REPLICA_WAIT: the flush then stops before applying anything and
    the snapshots stay for the next flush. A node without replicas costs nothing here.

    WAIT waits for its own connection's last write: a write of no consequence
    (scripts.REPLICATED) goes first, on the same connection, after the snapshots."""
    timeout = max(1, round(conf.FLUSH_REPLICA_WAIT * 1000))
    for node in nodes:
        if not node.replicas:
            continue
        pipe = node.client.pipeline(transaction=False)
        pipe.execute_command("EVAL", scripts.REPLICATED, 1, keys.replicated_key(node.shard))
        pipe.execute_command("WAIT", node.replicas, timeout)
        written, acknowledged = pipe.execute(raise_on_error=False)
        if isinstance(written, Exception):
            raise written
        if refused("WAIT", acknowledged):
            continue
        if acknowledged < node.replicas:
            raise ReplicasBehind(
                f"{acknowledged} of {node.replicas} replicas of {node_name(node)} acknowledged the"
                f" snapshots within {timeout} ms (IMPRESSIONS_FLUSH_REPLICA_WAIT); applied now, a"
                " failover would count them twice: they stay for the next flush"
            )


def node_name(node):
    kwargs = node.client.connection_pool.connection_kwargs
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"


def snapshots_by_flush(client, others=None, shards=None, sizes_of=None):
    """{flush id: [shards holding a snapshot of it]}, over every shard (of `shards`, by default
    IMPRESSIONS_SHARDS's), of the ids of this
    build's layout (keys.FLUSH_ID). Another layout's, a later build's (the rule in keys.py), are
    left alone: not read, noted in the ledger, taken out of the set or deleted (left_alone);
    `others`, a set, gets their ids (str), whose ledger rows the pruning keeps.

    `sizes_of` ((flush id, shards)): in the same round trip, snapshot_sizes() of that flush's
    snapshots in those shards (a flush's own, taken just before: one round trip less before its
    read starts); returns (found, sizes) then."""
    shards = range(conf.SHARDS) if shards is None else shards
    pipe = client.pipeline(transaction=False)
    for shard in shards:
        pipe.smembers(keys.snapshots_key(shard))
    hashes = [] if sizes_of is None else snapshot_hashes(*sizes_of)
    for _, key, _ in hashes:
        pipe.hlen(key)
    replies = pipe.execute()
    sizes = sizes_found(hashes, replies[len(shards) :])
    found, foreign = defaultdict(list), defaultdict(list)
    for shard, flush_ids in zip(shards, replies[: len(shards)], strict=True):
        for flush_id in flush_ids:
            if keys.is_own_flush_id(flush_id):
                found[flush_id.decode()].append(shard)
            else:
                foreign[flush_id].append(shard)
    if foreign:
        left_alone(foreign)
        if others is not None:
            others.update(flush_id.decode(errors="replace") for flush_id in foreign)
    return found if sizes_of is None else (found, sizes)


# Whether this process said that it leaves another layout's snapshots alone (once: a later
# build's flush beside this one leaves new ones every window).
_foreign_told = False


def left_alone(foreign):
    """Say once per process that the snapshots of `foreign` ({flush id: [shards]}) are another
    layout's, left for the build that wrote them."""
    global _foreign_told
    if _foreign_told:
        return
    _foreign_told = True
    count = sum(len(shards) for shards in foreign.values())
    named = sorted(foreign)[:3]
    logger.warning(
        "left %d snapshot%s of another layout alone (flush ids such as %s, not of this build's"
        " form <yyyymmdd>T<hhmmss>-<8 hex>): a later build's, for its own flush to apply (its"
        " worker beside this one, a rolling deploy). Should no such build run any more, its"
        " counts wait in Redis until one does (docs/impressions/quickstart.md). Said once per"
        " process.",
        count,
        "" if count == 1 else "s",
        ", ".join(repr(flush_id.decode(errors="backslashreplace")) for flush_id in named),
    )


def snapshot_sizes(client, flush_id, shards):
    """{(shard, hash key, group): fields} of the hashes of `flush_id`'s snapshots in `shards`
    that hold any (keys.snapshot_hashes), in the order of `shards` (one round trip per node)."""
    hashes = snapshot_hashes(flush_id, shards)
    pipe = client.pipeline(transaction=False)
    for _, key, _ in hashes:
        pipe.hlen(key)
    return sizes_found(hashes, pipe.execute())


def snapshot_hashes(flush_id, shards):
    """[(shard, hash key, group)] of `flush_id`'s snapshots in `shards` (keys.snapshot_hashes)."""
    return [
        (shard, key, group)
        for shard in shards
        for key, group in keys.snapshot_hashes(shard, flush_id)
    ]


def sizes_found(hashes, replies):
    """snapshot_sizes() from the HLEN `replies` of `hashes`."""
    return {found: size for found, size in zip(hashes, replies, strict=True) if size}


class ReadAhead:
    """An iterator of read(item) of each of `items`, in their order, read by a thread of its own
    from the moment it is made, not from its first next(): the flush's own steps before its first
    batch (the lock holder's connection, the ledger's upkeep, the ledger row: ~9 ms of round
    trips) go on while it reads, instead of before the read starts. Closing it (or its end, or an
    error of the read) cancels the rest and ends the thread."""

    def __init__(self, read, items):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="impressions-read")
        self._results = self._pool.map(read, items)

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self._results)
        except BaseException:
            self.close()
            raise

    def close(self):
        self._results.close()
        self._pool.shutdown(cancel_futures=True)


def read_snapshots(client, hashes):
    """(shard, hash key, line prefix, {field: count}) of each of `hashes` ((shard, key, group)),
    the fields as Redis returns them (bytes), in their order."""

    def read(found):
        shard, key, group = found
        return shard, key, batches.group_prefix(group), read_snapshot(client, key)

    return ReadAhead(read, hashes)


def read_groups(client, members, order, undated_day):
    """The snapshot hashes of each group of `order` (`members`: {group: [(shard, hash key,
    fields)]}) a group at a time (batches.StreamedLines): for each group, [(shard, hash key, sorted lines,
    entries no database takes)]."""

    def read_group(group):
        prefix, chunks = batches.group_prefix(group), []
        hashes = members[group]
        read = read_small_snapshots(client, [(key, size) for _, key, size in hashes])
        for (shard, key, _), fields in zip(hashes, read, strict=True):
            lines, refused = batches.checked_lines(fields, undated_day, prefix=prefix)
            lines.sort()
            chunks.append((shard, key, lines, refused))
        return chunks

    return ReadAhead(read_group, order)


def read_small_snapshots(client, hashes):
    """[{field: count}] of the snapshot hashes `hashes` ([(hash key, fields it holds)]), in their
    order. Those that hold READ_CHUNK fields together go in one round trip (a pipeline of an
    HSCAN each): Redis serves no more fields in one go than one call of read_snapshot does. A
    10,000-post flush's group of hashes, ~500 fields each, took a round trip per hash, one after
    the other, while its first batch waited for every line."""
    found, start = [], 0
    while start < len(hashes):
        end, fields = start + 1, hashes[start][1]
        while end < len(hashes) and fields + hashes[end][1] <= READ_CHUNK:
            fields += hashes[end][1]
            end += 1
        if end == start + 1:
            found.append(read_snapshot(client, hashes[start][0]))
        else:
            pipe = client.pipeline(transaction=False)
            for key, _ in hashes[start:end]:
                pipe.hscan(key, 0, count=READ_CHUNK)
            found += [
                fields if not cursor else read_snapshot(client, key, first=(cursor, fields))
                for (key, _), (cursor, fields) in zip(
                    hashes[start:end], pipe.execute(), strict=True
                )
            ]
        start = end
    return found


def read_snapshot(client, key, first=None):
    """{field: count} of one snapshot, READ_CHUNK fields a call (HSCAN), not in one HGETALL:
    Redis serves the other clients between the calls. One HGETALL of 280,000 fields kept them
    waiting 77-84 ms, longer than the record path's 50 ms budget; these chunks, 5-6 ms.

    A snapshot no longer changes, so a full scan returns each of its fields, some perhaps twice
    (a hash being resized): with the same count, which the dict keeps once. A scan whose cursor
    moved to another server (a failover in the middle) may miss some: a read of several calls
    with fewer fields than HLEN says is made again, and after READ_ATTEMPTS the flush fails (the
    snapshot stays for the next one) rather than apply a part of it as the whole.

    `first`: the reply (cursor, fields) of the first call, made already (read_small_snapshots)."""
    for _ in range(READ_ATTEMPTS):
        cursor, fields = first or client.hscan(key, 0, count=READ_CHUNK)
        first = None
        if not cursor:
            return fields  # the whole snapshot in one call: nothing to check
        while cursor:
            cursor, chunk = client.hscan(key, cursor, count=READ_CHUNK)
            fields.update(chunk)
        size = client.hlen(key)
        if len(fields) == size:
            return fields
        logger.warning(
            "snapshot %s: read %d fields of %d, reading it again", key, len(fields), size
        )
    raise RedisError(f"snapshot {key}: {READ_ATTEMPTS} reads fell short of its fields")


def read_lines(
    client, flush_id, shards, undated_day, report, check=False, part=0, parts=1, sizes=None
):
    """The lines of `flush_id`'s snapshots in `shards`, with the entries that no database takes
    moved out of the snapshots (set_aside): looked for in fields without a day, and in every
    entry with `check`.

    Read a group at a time (batches.StreamedLines), the batches of one applied while the next
    is read, from where part `part` of `parts` starts; with `check`, read whole first
    (batches.SnapshotLines). `sizes`: snapshot_sizes() of them, if asked already
    (snapshots_by_flush's `sizes_of`); asked here otherwise, and always with `check`.
    """
    if sizes is None or check:
        sizes = snapshot_sizes(client, flush_id, shards)
    else:  # asked already, in those shards or more
        sizes = {found: size for found, size in sizes.items() if found[0] in shards}
    hashes = list(sizes)
    if check:
        lines = batches.SnapshotLines(
            read_snapshots(client, hashes), undated_day, check, shards=shards
        )
        if lines.set_aside:
            report.counters_set_aside += set_aside(client, flush_id, lines.set_aside)
        return lines

    def refused(shard, key, entries):
        report.counters_set_aside += set_aside(client, flush_id, {(shard, key): entries})

    members = defaultdict(list)  # {group: [(shard, hash key, fields)]}, in the order of `shards`
    for shard, key, group in hashes:
        members[group].append((shard, key, sizes[shard, key, group]))
    order = [group for group in (keys.UNGROUPED, *keys.GROUPS) if group in members]
    group_sizes = [(group, sum(size for _, _, size in members[group])) for group in order]
    start = batches.group_start(group_sizes, part, parts)
    # From the group `start` begins on, going round.
    first = [group for group in order if batches.group_prefix(group) >= start]
    groups = read_groups(client, members, first + order[: len(order) - len(first)], undated_day)
    return batches.StreamedLines(groups, shards, refused, sizes=group_sizes, start=start)


def set_aside(client, flush_id, refused):
    """Move the snapshot entries that no database takes ({(shard, hash key): {field: count}}:
    something else than the record script wrote them into the buffer) to their shard's set-aside
    hash, so that they block no batch and are not lost; returns how many moved. The counts are
    impressions of nobody knows what: they are not applied, and an operator reads them there."""
    moved = 0
    for (shard, key), entries in refused.items():
        fields, moved_here = list(entries), 0
        for start in range(0, len(fields), SET_ASIDE_CHUNK):
            moved_here += client.execute_command(
                "EVAL",
                scripts.SET_ASIDE,
                2,
                key,
                keys.set_aside_key(shard),
                flush_id,
                *fields[start : start + SET_ASIDE_CHUNK],
            )
        if moved_here:  # none: a flush racing this one moved them first, and said so
            logger.error(
                "flush %s: %d snapshot entries of shard %d are not `<object id>:<yyyymmdd>` with"
                " a count from 0 up, within a bigint (the record script did not write them); set"
                " aside in Redis hash %s, not applied. First: %r",
                flush_id,
                moved_here,
                shard,
                keys.set_aside_key(shard),
                fields[0][:100],
            )
        moved += moved_here
    return moved


def drop_snapshots(client, flush_id, shards):
    """Delete the snapshots (only after the database has them all); a shard whose slot is
    migrating, once it has moved (in_slots)."""
    pipe = client.pipeline(transaction=False)
    commands = [
        (
            "EVAL",
            scripts.DROP_SNAPSHOT,
            4 + len(keys.GROUPS),
            keys.snapshot_key(shard, flush_id),
            keys.snapshots_key(shard),
            keys.snapshot_days_key(shard, flush_id),
            keys.totals_key(shard),
            *keys.snapshot_group_keys(shard, flush_id),
            flush_id,
        )
        for shard in shards
    ]
    for command in commands:
        pipe.execute_command(*command)
    in_slots(client, shards, commands, pipe.execute(raise_on_error=False))
