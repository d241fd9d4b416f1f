"""Scheduling the flush: at most one per window, and a pending count is never left without one."""

import logging

from . import keys
from .conf import conf
from .tasks import enqueue_flush

logger = logging.getLogger(__name__)


def arm_flush(client, shard, guard_taken=False):
    """Take the schedule guard (unless the record script did) and enqueue the delayed flush.

    Called when a shard was newly armed; True when this call scheduled the flush. If another
    caller holds the guard, its flush has not started yet, so it will snapshot this shard too.
    """
    try:
        if not guard_taken and not client.set(keys.guard_key(), "1", nx=True, ex=conf.GUARD_TTL):
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


def release(client, shard):
    """Let the next request in `shard` try to schedule again."""
    for key in (keys.guard_key(), keys.armed_key(shard)):
        try:
            client.delete(key)
        except Exception:  # the keys' TTL releases them anyway
            logger.warning("could not release %s", key, exc_info=True)
