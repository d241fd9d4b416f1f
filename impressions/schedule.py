"""Scheduling the flush: at most one per window, and a pending count is never left without one.

The schedule guard's value is when the flush was scheduled (Unix seconds; "1" from a version
before this one); its time to live, the flush's delay plus a grace, says when the flush is due
(the dashboard's "next flush").
"""

import time
from datetime import UTC, datetime, timedelta

from django.core.signals import setting_changed
from django.dispatch import receiver

from redis_endpoints import redacting_logger

from . import flush, keys
from .conf import GUARD_GRACE_SECONDS, conf
from .redis_client import get_client, get_flush_client
from .tasks import enqueue_flush, lost_window, set_if_absent, take_guard

logger = redacting_logger(__name__)


def arm_flush(client, shard, guard_taken=None, lapsed=(None, -2)):
    """Take the schedule guard (unless the record script did: `guard_taken`, its value, and
    `lapsed`, what it found of the window before: tasks.lost_window) and enqueue the delayed
    flush, under that guard (its window names it: flush.window_command).

    Called when a shard was newly armed; True when this call scheduled the flush. If another
    caller holds the guard, its flush has not started yet, so it will snapshot this shard too.
    """
    try:
        if guard_taken:
            lost_window(*lapsed)
        guard = guard_taken or take_guard(client)
        if not guard:
            lapse_with_guard(client, shard)
            return False
    except Exception:
        # The shard stays armed until its TTL lapses; then the next request tries again.
        logger.warning("could not take the flush schedule guard", exc_info=True)
        return False
    if backoff.waiting():
        release(client, shard)  # a request after the wait tries again
        return False
    try:
        enqueue_flush(delay=conf.FLUSH_DELAY, guard=guard)
    except Exception:
        wait = backoff.failed()
        logger.exception(
            "could not enqueue the impressions flush; the counts wait in Redis, and this"
            " process's first view after %.0f s schedules it",
            wait,
        )
        release(client, shard)
        return False
    backoff.succeeded()
    return True


class FullRedis:
    """After Redis refused a record call for want of memory (maxmemory), ask for a flush to run
    now: it is what frees the memory, and recording stays refused until one has (the scheduled
    flush may be IMPRESSIONS_FLUSH_DELAY away; lost or failed, with no impression arming a shard
    to schedule another, never). Its tasks leave the scheduled window in place, as "Flush now"
    does; a flush racing them applies each count once all the same (the ledger).

    One such flush at a time for all processes together: a guard in Redis (taken on a full Redis too),
    held for flush.SOON_HOLD seconds, and by every flush for as long as it runs (flush.SoonGuard),
    until a flush has freed memory and flush.SOON_SPACING seconds more; if none does (its task
    lost, a flush that frees nothing, or one that died), it lapses SOON_HOLD seconds after it was
    taken or last held. A process asks at most once every INTERVAL seconds: a request refused in
    the meantime costs no round trip."""

    INTERVAL = 5.0

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.next_check = 0.0

    def refused(self):
        """Enqueue a flush now unless one is asked for already; True when this call did."""
        now = self.clock()
        if now < self.next_check or backoff.waiting():
            return False
        self.next_check = now + self.INTERVAL
        key = keys.flush_soon_key()
        try:
            client = get_client()
            if not set_if_absent(client, key, f"{time.time():.3f}", flush.SOON_HOLD):
                return False
        except Exception:
            logger.warning("could not ask for a flush of the full Redis", exc_info=True)
            return False
        try:
            enqueue_flush(soon=True)
        except Exception:
            wait = backoff.failed()
            logger.exception(
                "could not enqueue the flush that frees the full Redis; this process asks again"
                " after %.0f s",
                wait,
            )
            try:
                client.delete(key)
            except Exception:  # its TTL releases it anyway
                logger.warning("could not release %s", key, exc_info=True)
            return False
        backoff.succeeded()
        return True


full_redis = FullRedis()


def lapse_with_guard(client, shard):
    """The guard is another caller's: `shard`'s flag lapses with it (the record script does the
    same on one server). Should that caller die before enqueueing its flush, the first view
    after the guard, in any shard, schedules again: a flag kept its own TTL from now would keep
    the views of its shard scheduling nothing for up to a second guard's time."""
    ttl = client.pttl(keys.guard_key())
    if ttl > 0:
        client.pexpire(keys.armed_key(shard), ttl)


class Backoff:
    """After the task backend failed to take a flush, this process leaves it alone for a while
    (5 s, doubling to 60 s while it keeps failing): a queue that hangs until its timeouts (3-9 s
    for SQS or RQ) would otherwise hold up every request that arms a shard, not one a while.
    The counts wait in Redis meanwhile; the first request after the wait schedules their flush."""

    FIRST, LONGEST = 5.0, 60.0

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.until = self.wait = 0.0

    def waiting(self):
        return self.clock() < self.until

    def failed(self):
        self.wait = min(self.LONGEST, 2 * self.wait or self.FIRST)
        self.until = self.clock() + self.wait
        return self.wait

    def succeeded(self):
        self.until = self.wait = 0.0


backoff = Backoff()


@receiver(setting_changed, dispatch_uid="impressions-enqueue-backoff")
def _on_setting_changed(setting, **_):
    if setting in ("TASKS", "IMPRESSIONS_TASK_BACKEND", "IMPRESSIONS_TASK_QUEUE"):
        backoff.succeeded()  # another backend: no reason to wait for it


def flush_due():
    """When the scheduled flush is due (an aware datetime), None if unknown or none is scheduled.

    From the guard's remaining time to live, which it was given as the delay of the flush it
    scheduled (conf.GUARD_TTL: that delay and a grace), not from the time it was taken plus
    IMPRESSIONS_FLUSH_DELAY: a delay changed while the flush is scheduled (a deploy) does not
    move the flush already enqueued. In one round trip with the guard's value."""
    pipe = get_flush_client().pipeline(transaction=False)
    pipe.get(keys.guard_key())
    pipe.pttl(keys.guard_key())
    value, ttl = pipe.execute()
    try:
        scheduled_at = float(value) if value and value != b"1" else None
    except ValueError:
        return None
    if scheduled_at is None or ttl is None or ttl < 0:
        return None
    return datetime.now(UTC) + timedelta(milliseconds=ttl - GUARD_GRACE_SECONDS * 1000)


def release(client, shard):
    """Let the next request in `shard` try to schedule again: the guard just taken goes, and
    the window noted with it (keys.scheduled_window_key), none of whose tasks was enqueued."""
    for key in (keys.guard_key(), keys.scheduled_window_key(), keys.armed_key(shard)):
        try:
            client.delete(key)
        except Exception:  # the keys' TTL releases them anyway
            logger.warning("could not release %s", key, exc_info=True)
