"""Scheduling the flush: at most one per window, and a pending count is never left without one.

The schedule guard's value is when the flush was scheduled (Unix seconds; "1" from a version
before this one): the dashboard's "next flush" is that plus IMPRESSIONS_FLUSH_DELAY.
"""

import logging
from datetime import UTC, datetime

from . import keys
from .conf import conf
from .redis_client import get_flush_client
from .tasks import enqueue_flush, take_guard

logger = logging.getLogger(__name__)


def arm_flush(client, shard, guard_taken=False):
    """Take the schedule guard (unless the record script did) and enqueue the delayed flush.

    Called when a shard was newly armed; True when this call scheduled the flush. If another
    caller holds the guard, its flush has not started yet, so it will snapshot this shard too.
    """
    try:
        if not guard_taken and not take_guard(client):
            return False
    except Exception:
        # The shard stays armed until its TTL lapses; then the next request tries again.
        logger.warning("could not take the flush schedule guard", exc_info=True)
        return False
    try:
        enqueue_flush(delay=conf.FLUSH_DELAY)
    except Exception:
        logger.exception("could not enqueue the impressions flush; the next request retries")
        release(client, shard)
        return False
    return True


def flush_due():
    """When the scheduled flush is due (an aware datetime), None if unknown or none is scheduled."""
    value = get_flush_client().get(keys.guard_key())
    try:
        scheduled_at = float(value) if value and value != b"1" else None
    except ValueError:
        return None
    if scheduled_at is None:
        return None
    return datetime.fromtimestamp(scheduled_at + conf.FLUSH_DELAY, UTC)


def release(client, shard):
    """Let the next request in `shard` try to schedule again."""
    for key in (keys.guard_key(), keys.armed_key(shard)):
        try:
            client.delete(key)
        except Exception:  # the keys' TTL releases them anyway
            logger.warning("could not release %s", key, exc_info=True)
