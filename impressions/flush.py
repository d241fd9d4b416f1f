"""The flush: move pending counts from Redis to the database so each one is applied exactly once.

1. Clear the schedule guard, then snapshot every shard's pending hash (and its set of days) into
   per-flush keys (atomic RENAMEs in the shard's slot); new impressions start a fresh pending hash.
2. Apply every snapshot found (left-overs of crashed flushes first) in one database transaction
   per flush id, gated by its ledger row: the totals and the per-day history together; delete the
   snapshots only after the commit.
A crash anywhere leaves snapshots that the next flush applies or, if the ledger has them, drops.
"""

import logging
import secrets
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from django.db import DatabaseError, connection
from django.utils import timezone
from redis.exceptions import RedisClusterException, RedisError

from redis_endpoints import redact_text

from . import history_writer, keys, ledger, periods
from .conf import conf
from .exceptions import DatabaseUnavailable, RedisUnavailable
from .models import Flush
from .redis_client import get_flush_client
from .scripts import script
from .signals import flush_finished

logger = logging.getLogger(__name__)


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

    def add(self, applied):
        self.posts_updated += applied.posts_updated
        self.impressions_applied += applied.impressions_applied
        self.posts_dropped += applied.posts_dropped
        self.impressions_dropped += applied.impressions_dropped

    def as_dict(self):
        return {**asdict(self), "outcome": str(self.outcome)}

    def __str__(self):
        text = (
            f"flush {self.flush_id}: {self.impressions_applied} impressions applied to"
            f" {self.posts_updated} posts in {self.duration:.3f} s"
        )
        if self.posts_dropped:
            text += f"; {self.impressions_dropped} dropped for {self.posts_dropped} deleted posts"
        if self.recovered:
            text += f"; recovered snapshots of {', '.join(self.recovered)}"
        return text


def checkpoint(name):
    """A no-op at named points of a flush; tests replace it to crash or pause right there."""


def new_flush_id():
    return f"{timezone.now():%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


def flush_pending(batch_size=None, keep_schedule=False):
    """Flush now; returns a FlushReport, raises FlushError when Redis or the database fails.

    `keep_schedule` (a flush asked for by hand): a flush already scheduled stays scheduled, and
    takes what is recorded after this one, so the impressions that follow need no flush of their
    own (and the dashboard's "next flush" stays true). The scheduled flush itself clears it.
    """
    batch_size = batch_size or conf.FLUSH_BATCH_SIZE
    report = FlushReport(flush_id=new_flush_id())
    started = time.monotonic()
    # The ledger's start time, to the microsecond: the id has whole seconds, so the ledger's
    # duration of this flush would be off by up to one.
    started_at = timezone.now()
    try:
        client = get_flush_client()
        # Counts without a day (snapshots left by a version before the history) count today.
        today = periods.day_of(timezone.now())
        take_snapshots(client, report.flush_id, keep_schedule)
        checkpoint("after-snapshot")
        by_flush = snapshots_by_flush(client)
        # Left-overs first, oldest first: they hold the oldest counts.
        for flush_id in sorted(by_flush, key=lambda f: (f == report.flush_id, f)):
            shards = by_flush[flush_id]
            snapshots = {shard: read_snapshot(client, shard, flush_id, today) for shard in shards}
            checkpoint("before-apply")
            applied = ledger.apply_snapshots(
                flush_id,
                snapshots,
                batch_size=batch_size,
                recovered_by="" if flush_id == report.flush_id else report.flush_id,
                before_commit=lambda: checkpoint("before-commit"),
                started_at=started_at if flush_id == report.flush_id else None,
            )
            checkpoint("after-commit")
            for shard in shards:
                drop_snapshot(client, shard, flush_id)
            report.add(applied)
            if flush_id != report.flush_id:
                report.recovered.append(flush_id)
        if by_flush:
            report.outcome = Flush.Outcome.APPLIED
        if report.flush_id not in by_flush:
            ledger.record_outcome(report.flush_id, Flush.Outcome.EMPTY, started_at=started_at)
        ledger.prune_ledger()
        history_writer.prune()
    except (RedisError, RedisClusterException) as error:
        _note_failure(report.flush_id, error, started_at)
        flush_finished.send(
            flush_pending, report=report, duration=time.monotonic() - started, error=error
        )
        raise RedisUnavailable(f"Redis failed during flush {report.flush_id}: {error}") from error
    except DatabaseError as error:
        if not connection.in_atomic_block:
            connection.close()  # reconnect on the next flush instead of reusing a dead socket
        flush_finished.send(
            flush_pending, report=report, duration=time.monotonic() - started, error=error
        )
        raise DatabaseUnavailable(
            f"the database failed during flush {report.flush_id}; its counts stay in Redis"
            f" for the next flush: {error}"
        ) from error
    report.duration = time.monotonic() - started
    logger.info("%s", report, extra={"flush": report.as_dict()})
    flush_finished.send(flush_pending, report=report, duration=report.duration, error=None)
    return report


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


def take_snapshots(client, flush_id, keep_schedule=False):
    if not keep_schedule:
        client.delete(keys.guard_key())  # from here on a new impression schedules the next flush
    snapshot = script(client, "SNAPSHOT")
    for shard in range(conf.SHARDS):
        snapshot(
            keys=[
                keys.pending_key(shard),
                keys.snapshot_key(shard, flush_id),
                keys.snapshots_key(shard),
                keys.armed_key(shard),
                keys.pending_days_key(shard),
                keys.snapshot_days_key(shard, flush_id),
                keys.totals_key(shard),
            ],
            args=[flush_id, keys.snapshot_prefix(shard)],
        )


def snapshots_by_flush(client):
    """{flush id: [shards holding a snapshot of it]}, this flush's and any left behind."""
    found = defaultdict(list)
    for shard in range(conf.SHARDS):
        for flush_id in client.smembers(keys.snapshots_key(shard)):
            found[flush_id.decode()].append(shard)
    return found


def read_snapshot(client, shard, flush_id, undated_day):
    """{(post id, day): count} of one shard's snapshot; a field without a day counts on `undated_day`."""
    raw = client.hgetall(keys.snapshot_key(shard, flush_id))
    days = {b"": undated_day}  # a few distinct days: parse each once
    counts = {}
    for name, count in raw.items():
        post_id, _, day_text = name.partition(b":")
        day = days.get(day_text)
        if day is None:
            day = days[day_text] = keys.parse_day(day_text)
        key = (int(post_id), day)
        # An undated field and today's field of one post (a deploy half done) add up.
        counts[key] = counts.get(key, 0) + int(count)
    return counts


def drop_snapshot(client, shard, flush_id):
    script(client, "DROP_SNAPSHOT")(
        keys=[
            keys.snapshot_key(shard, flush_id),
            keys.snapshots_key(shard),
            keys.snapshot_days_key(shard, flush_id),
            keys.totals_key(shard),
        ],
        args=[flush_id],
    )
