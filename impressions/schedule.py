"""Scheduling the flush: at most one per window, and a pending count is never left without one."""

import logging
from datetime import timedelta

from django.utils import timezone

from . import keys
from .conf import conf

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


def enqueue_flush(delay=0):
    """Enqueue the flush task `delay` seconds from now.

    A backend that cannot defer (ImmediateBackend) gets it without run_after: it runs now.
    """
    from .tasks import flush_impressions_task

    task = flush_impressions_task
    if delay and task.get_backend().supports_defer:
        task = task.using(run_after=timezone.now() + timedelta(seconds=delay))
    return task.enqueue()


def rearm_after_failure(client):
    """After a failed flush: schedule another one so snapshots left behind are retried."""
    from .tasks import flush_impressions_task

    if not flush_impressions_task.get_backend().supports_defer:
        return False  # running it again right now would just fail again, recursively
    try:
        if client.set(keys.guard_key(), "1", nx=True, ex=conf.GUARD_TTL):
            enqueue_flush(delay=conf.FLUSH_DELAY)
            return True
    except Exception:
        logger.exception("could not re-schedule the impressions flush")
    return False
