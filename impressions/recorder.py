"""The request side: count served posts in Redis, de-duplicated per viewer, in one round trip."""

import math
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from typing import NamedTuple

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils import timezone
from redis.exceptions import ClusterCrossSlotError, MovedError, OutOfMemoryError, ResponseError

from redis_endpoints import redacting_logger

from . import budgets, clocks, keys, periods, scripts
from .batches import in_bigint
from .conf import conf
from .holdoff import holdoff
from .loglines import LineLimiter
from .redis_client import get_client, is_cluster
from .reloads import reloads, safety_margin
from .schedule import arm_flush, full_redis
from .scripts import evalsha
from .signals import impressions_ignored, impressions_recorded

logger = redacting_logger(__name__)


class RecordResult(NamedTuple):
    counted: int  # impressions added to the pending counts
    lost: int  # impressions that could not be recorded (Redis down or slow)
    scheduled: bool  # this call scheduled the next flush
    limited: int = 0  # impressions not counted: the viewer had used its hourly budget


class BufferStatus(NamedTuple):
    pending_impressions: int  # counted, not yet taken by a flush (snapshots are not included)
    pending_entries: int  # (shard, post, day) counters holding them: the next flush's work
    reported_lost: int  # impressions that processes could not record, reported since
    in_snapshots: (
        int  # taken by a flush that has not finished (or crashed): the next one applies them
    )
    flush_scheduled: bool  # a flush is scheduled and has not started
    set_aside: int = 0  # entries no database takes, set aside by flushes (flush.set_aside)


class LossCounter(LineLimiter):
    """Impressions this process failed to record; `unreported` is added to Redis when it answers.

    One log line every LOG_INTERVAL seconds at most for each reason (the error's class and
    remedy), for that reason's losses since its last line: an outage (Redis down or full) at a
    thousand requests a second would log a thousand lines a second, and so would a failover
    whose calls time out and find the connection refused in turn. A reason without a line in the
    last LOG_INTERVAL is logged at once: it is news. The metrics count every loss as it happens
    (impressions_recorded).
    """

    LOG_INTERVAL = 10.0

    def __init__(self, clock=time.monotonic):
        super().__init__(self.LOG_INTERVAL, clock)
        self.requests = 0
        self.impressions = 0
        self.unreported = 0

    def add(self, impressions, reason=None):
        """Count a call's loss; (calls, impressions) of its reason for a log line to say, this
        one's included, or None while that reason's last line is less than LOG_INTERVAL old."""
        with self._lock:
            self.requests += 1
            self.impressions += impressions
            self.unreported += impressions
            return self._note(reason, impressions)

    def take_unreported(self):
        """Hand the unreported count to one caller (threads must not report it twice)."""
        if not self.unreported:  # the usual case, without the lock: a count added meanwhile
            return 0  # waits for the next call
        with self._lock:
            count, self.unreported = self.unreported, 0
            return count

    def give_back(self, count):
        with self._lock:
            self.unreported += count


lost = LossCounter()


# Posts per script call. A call holds its Redis alone: 1,000 posts take it about 4 ms, while one
# call of 10,000 held every other client up 40 ms and outlasted the caller's 50 ms timeout (the
# page lost). A larger page goes in parts, one round trip each, which de-duplicate as one call.
# A part's command is 1,031 arguments at most, well within redis_client.MAX_ARGS.
CALL_POSTS = 1000


def record_impressions(viewer_key, post_ids, *, now=None):
    """Count `post_ids` as seen by `viewer_key`; never raises (a failure is logged and counted).

    `now` (tests, tools): the time of the views, Unix seconds or an aware datetime; it drives the
    de-duplication window and the day they count on. None: Redis's clock drives both (this host
    only names the days around Redis's time as it last measured it, redis_time, for the script to
    pick from).
    An id that is no integer a bigint holds raises ValueError: no flush could apply it.

    A reload of pairs Redis is known to still de-duplicate (see reloads.py) skips Redis: with
    `now` None only, since the cache keeps this process's clock, not the caller's.
    """
    post_ids = [int(post_id) for post_id in post_ids]
    if not post_ids:
        return RecordResult(0, 0, False)
    if not in_bigint(min(post_ids)) or not in_bigint(max(post_ids)):
        outside = next(post_id for post_id in post_ids if not in_bigint(post_id))
        raise ValueError(f"object id {outside} is outside a bigint: no flush could apply it")
    window = conf.DEDUP_WINDOW
    use_cache = now is None and window > 0
    if use_cache and reloads.covers(viewer_key, post_ids):
        impressions_recorded.send(record_impressions, served=len(post_ids), counted=0, lost=0)
        return RecordResult(0, 0, False)
    sent_at = reloads.clock()  # before the call: Redis's `now` is later, so the block ends later
    sent_wall = time.time()  # clocks.offset: this host's clock against the script's (Redis's)
    script_now, day = moment_of(now)
    shard = keys.shard_of(viewer_key)
    replies = []  # {counted, newly armed, guard taken, blocked ms, limited, lapsed...} of each part
    failed = 0  # posts of the parts not recorded
    unreported = lost.take_unreported()
    try:
        with holdoff.attempt():
            client = get_client()
            # One server: take the schedule guard in the same round trip.
            guard = not is_cluster(client)
            for start in range(0, len(post_ids), CALL_POSTS):
                part = post_ids[start : start + CALL_POSTS]
                script_keys, args = record_call(
                    shard, viewer_key, part, script_now, day, unreported, guard=guard
                )
                reply = evalsha(client, "RECORD", script_keys, args)
                if reply[0] == b"day":
                    # None of the days this host named holds Redis's time (its clock a day or
                    # more off): again, with the days around Redis's (today's clock is offset).
                    clocks.offset.measured(sent_wall, float(reply[1]))
                    day = today.argument()
                    script_keys, args = record_call(
                        shard, viewer_key, part, script_now, day, unreported, guard=guard
                    )
                    reply = evalsha(client, "RECORD", script_keys, args)
                    if reply[0] == b"day":
                        raise RuntimeError("Redis's time is in none of the days around it")
                replies.append(reply)
                unreported = 0
    except Exception as error:
        lost.give_back(unreported)
        failed = len(post_ids) - len(replies) * CALL_POSTS
        # Not the viewer's key: a user id (`u:42`) in a log line outlives the buffer by months.
        failure = record_loss(failed, "a viewer", error)
        if not replies:
            return failure
    else:
        if lost.held:  # losses in no line yet: this call may be the first to log them
            log_held_losses()
        if script_now == "":
            clocks.offset.measured(sent_wall, float(replies[-1][7]))
    recorded = post_ids[: len(post_ids) - failed]
    counted = sum(int(reply[0]) for reply in replies)
    limited = sum(int(reply[4]) for reply in replies)
    blocked = min(reply[3] for reply in replies) / 1000 - safety_margin(window)
    if use_cache and blocked > 0:
        reloads.remember(viewer_key, recorded, sent_at + blocked)
    scheduled = False
    # At most one part arms the shard (SET NX).
    for _, newly_armed, guard_taken, _, _, *lapsed, _ in replies:
        if newly_armed and guard_taken != 0:
            # The guard's value when the script took it (bytes), -1 when it had no guard key.
            taken = guard_taken.decode() if isinstance(guard_taken, bytes) else None
            scheduled = arm_flush(client, shard, guard_taken=taken, lapsed=lapsed)
    if limited:
        impressions_ignored.send(record_impressions, reason="rate", served=limited)
    impressions_recorded.send(
        record_impressions, served=len(recorded) - limited, counted=counted, lost=0
    )
    return RecordResult(counted, failed, scheduled, limited)


def record_call(shard, viewer_key, post_ids, script_now, day, unreported=0, *, guard=True):
    """(keys, args) of one RECORD call (scripts.py): the one place that knows their order.

    `guard`: pass the schedule guard's key too (a standalone Redis; a cluster keeps it in another
    slot).
    """
    hour = budgets.hour_of(None if script_now == "" else float(script_now))
    script_keys = keys.record_keys(shard, viewer_key, hour, with_guard=guard)
    budget = conf.VIEWER_IMPRESSIONS_PER_HOUR
    args = [script_now, conf.DEDUP_WINDOW, conf.GUARD_TTL, unreported, day, budget]
    return script_keys, [*args, budgets.KEY_TTL, *post_ids]


def record_loss(count, whose, error):
    """`count` impressions that could not be recorded: logged (LossCounter), counted in this
    process (reported to Redis by a later call) and signalled; returns the failed call's
    RecordResult. Redis refused them for want of memory: a flush is asked for (FullRedis)."""
    if is_full_redis(error):
        full_redis.refused()
    remedy = remedy_of(error)
    since = lost.add(count, (type(error).__name__, remedy))
    if since is not None:
        calls, impressions = since
        logger.warning(
            "impressions lost: %d for %s (%s: %s%s)%s; lost in this process so far: %d",
            count,
            whose,
            type(error).__name__,
            error,
            remedy,
            f", {impressions} in {calls} calls since the last such line" if calls > 1 else "",
            lost.impressions,
            extra={"lost": impressions, "calls": calls, "error": type(error).__name__},
        )
    impressions_recorded.send(record_loss, served=count, counted=0, lost=count)
    return RecordResult(0, count, False)


def log_held_losses():
    """A call succeeded: the losses no line said yet (LossCounter) get theirs, one for each
    error, once its interval is over: an outage's last seconds are logged within about
    LOG_INTERVAL, not with the next outage's first line, and a Redis that fails every other
    call still logs one line each LOG_INTERVAL."""
    for (error_name, remedy), (calls, impressions) in lost.take_held().items():
        logger.warning(
            "impressions lost: %d in %d calls since the last line for %s%s; recording works"
            " again; lost in this process so far: %d",
            impressions,
            calls,
            error_name,
            remedy,
            lost.impressions,
            extra={"lost": impressions, "calls": calls, "error": error_name},
        )


def remedy_of(error):
    """What a loss's log line adds for an error that says the settings are wrong, else ""."""
    # MOVED: a key of another node's slot; CROSSSLOT: keys of two slots in one call. A standalone
    # client of redis-py before 6.0 raises them as plain ResponseErrors: known by their code.
    if isinstance(error, MovedError | ClusterCrossSlotError) or str(error).startswith(
        ("MOVED ", "CROSSSLOT ")
    ):
        return (
            "; the server is in cluster mode, which IMPRESSIONS_REDIS_CLUSTER='false' denies:"
            " set it to 'auto' or 'true'"
        )
    if is_full_redis(error):
        return (
            "; Redis is full (maxmemory): nothing counts until memory is freed, by a flush (one"
            " is asked for) of the pending counts or as de-duplication entries and budgets lapse"
            " (IMPRESSIONS_DEDUP_WINDOW, the hour), which no flush frees; if it lasts, give Redis"
            " more memory (maxmemory)"
        )
    return ""


def is_full_redis(error):
    """Whether Redis refused the call at its maxmemory: OOM, or on Redis 6.2, which answers every
    error of a script as ERR "Error running script (…): … -OOM command not allowed …"."""
    return isinstance(error, OutOfMemoryError) or (
        isinstance(error, ResponseError) and "-OOM command not allowed" in str(error)
    )


def moment_of(now):
    """(the script's `now` argument, its day argument) for record_impressions' `now`: the day
    text of the views, or, for Redis's time, today's span (Today.argument)."""
    if now is None:
        return "", today.argument()
    if isinstance(now, datetime):
        return now.timestamp(), keys.day_text(periods.day_of(now))
    return now, keys.day_text(periods.day_of(datetime.fromtimestamp(now, UTC)))


def redis_time():
    """Redis's time as this process last measured it: this host's clock less its offset
    (clocks.offset), this host's before a first measurement."""
    return time.time() - (clocks.offset.seconds or 0.0)


class Today:
    """The day text of the present moment in TIME_ZONE, made again only once that day is over
    (every request asks for it; a time zone lookup each time is most of what it costs). The
    moment: Redis's (redis_time), which says which day a view counts on."""

    EMPTY = ("", 0.0, 0.0, "")

    def __init__(self, clock=redis_time):
        self.clock = clock
        # (day text, its first second, the next day's (Unix time), the record script's argument)
        self.span = self.EMPTY

    def text(self):
        return self._span()[0]

    def argument(self):
        """The record script's day argument: "<day before> <day> <day after> <the first second
        of each> <the day after's end>", the script picking the one its time (Redis's) falls in:
        around midnight, a host whose clock is a few seconds off counts on Redis's day, not its
        own; a day or more off, the script refuses the call (record_impressions asks again)."""
        return self._span()[3]

    def _span(self):
        span = self.span
        now = self.clock()
        if span[1] <= now < span[2]:
            return span
        day = periods.day_of(datetime.fromtimestamp(now, UTC))
        zone = timezone.get_default_timezone()
        start = datetime.combine(day, dtime.min, zone).timestamp()
        end = datetime.combine(day + timedelta(days=1), dtime.min, zone).timestamp()
        first, last = (
            math.ceil(datetime.combine(day + timedelta(days=n), dtime.min, zone).timestamp())
            for n in (-1, 2)
        )
        before, after = (keys.day_text(day + timedelta(days=n)) for n in (-1, 1))
        text = keys.day_text(day)
        bounds = f"{first} {math.ceil(start)} {math.ceil(end)} {last}"
        span = (text, start, end, f"{before} {text} {after} {bounds}")
        if start <= now < end:  # else a midnight the zone skips or repeats: not kept, made again
            self.span = span
        return span

    def forget(self):
        self.span = self.EMPTY


today = Today()


@receiver(setting_changed, dispatch_uid="impressions-forget-today")
def _on_setting_changed(setting, **_):
    if setting in ("TIME_ZONE", "USE_TZ"):
        today.forget()


def pending_counts(post_ids):
    """{post id: count still in Redis} for these posts, one pipelined round trip per node.

    Raises redis errors; the admin shows "unavailable" then.
    """
    return pending_status(post_ids)[0]


# Ids per PENDING call: each shard is asked about every id (a post's counts are in the shards of
# its viewers), so a call's arguments grow with the ids. 1,000 keep it within
# redis_client.MAX_ARGS (ElastiCache Serverless refuses a call of more than some 3,980 ids) and
# its script short: about 4 ms of the server's time with 100,000 pending counters and 2
# snapshots, over 2 days each (20 ms when it read each id in all 12 hashes of each), where one
# call of 10,000 ids held every other client up some 25 ms, longer with snapshots.
PENDING_IDS = 1000


def pending_status(post_ids):
    """(pending counts by post id, impressions reported lost) in one round trip per node.

    A call reads PENDING_IDS ids of one shard, every count of each of its ids at once: an id's
    count is read whole (a flush moving it from pending to a snapshot in between is seen in one
    place or the other). Two calls are two moments, as two shards always were.
    """
    post_ids = list(dict.fromkeys(int(post_id) for post_id in post_ids))  # each id once
    client = get_client()
    totals = defaultdict(int)
    lost_total = 0
    pipe = client.pipeline(transaction=False)
    parts = [
        post_ids[start : start + PENDING_IDS] for start in range(0, len(post_ids), PENDING_IDS)
    ] or [[]]
    for shard in range(conf.SHARDS):
        for part in parts:
            # EVAL, not EVALSHA: a pipeline cannot load a missing script half-way; admin-only.
            pipe.execute_command(
                "EVAL",
                scripts.PENDING,
                4 + len(keys.GROUPS),
                keys.pending_key(shard),
                keys.snapshots_key(shard),
                keys.lost_key(shard),
                keys.pending_days_key(shard),
                *keys.pending_group_keys(shard),
                keys.snapshot_prefix(shard),
                keys.snapshot_days_prefix(shard),
                *(part or [0]),
            )
    replies = iter(pipe.execute())
    for _ in range(conf.SHARDS):
        for index, part in enumerate(parts):
            reply = next(replies)
            for post_id, value in zip(part, reply, strict=False):
                totals[post_id] += int(value)
            if index == 0:  # each part's reply ends with the shard's losses: counted once
                lost_total += int(reply[-1])
    return {post_id: totals[post_id] for post_id in post_ids}, lost_total


def buffer_status(timeout=None):
    """The buffer's totals over every shard, one pipelined round trip per node; raises redis errors.

    It reads small keys of each shard (the totals the scripts keep, HLEN of each pending hash,
    the losses, HLEN of the set-aside hash), so it costs Redis the same at 10 and at 10 million
    pending counters. After a deploy over the previous version's keys, the first flush counts the
    totals in full (SNAPSHOT).
    """
    pipe = get_client(timeout).pipeline(transaction=False)
    for shard in range(conf.SHARDS):
        pipe.hmget(keys.totals_key(shard), "pending", "snapshots")
        pipe.get(keys.lost_key(shard))
        pipe.hlen(keys.set_aside_key(shard))
        for key in [keys.pending_key(shard), *keys.pending_group_keys(shard)]:
            pipe.hlen(key)
    pipe.exists(keys.guard_key())
    *replies, scheduled = pipe.execute()
    entries = impressions = reported_lost = in_snapshots = set_aside = 0
    per_shard = 4 + len(keys.GROUPS)
    for index in range(0, len(replies), per_shard):
        (pending, snapshots), shard_lost, shard_set_aside, *shard_entries = replies[
            index : index + per_shard
        ]
        impressions += int(pending or 0)
        in_snapshots += int(snapshots or 0)
        entries += sum(shard_entries)
        reported_lost += int(shard_lost or 0)
        set_aside += shard_set_aside
    return BufferStatus(
        impressions, entries, reported_lost, in_snapshots, bool(scheduled), set_aside
    )
