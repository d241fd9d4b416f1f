"""The flush as a django.tasks task, and enqueueing it: now, after the window, or after a failure."""

import logging
import time
from datetime import timedelta

from django.tasks import task
from django.utils import timezone

from . import keys
from .conf import conf
from .exceptions import FlushError
from .flush import flush_pending
from .redis_client import get_flush_client

logger = logging.getLogger(__name__)


@task(takes_context=True)
def flush_impressions_task(context=None, manual=False):
    """Flush pending impressions; after the last attempt, schedule a later flush so nothing stays
    stranded. `manual`: asked for by hand ("Flush now"), it leaves the scheduled flush in place.

    A backend that retries failed tasks runs the flush again itself: re-scheduling on every
    failure as well would make two flushes where one is meant. `context` is None when called
    directly (`.call()`), which counts as a last attempt.
    """
    try:
        report = flush_pending(keep_schedule=manual)
    except FlushError:
        if is_last_attempt(context):
            try:
                rearm_after_failure(get_flush_client())
            except Exception:
                logger.exception("could not re-schedule the impressions flush")
        raise
    return report.as_dict()


def is_last_attempt(context):
    """Whether the task backend will not run this failed flush again.

    A backend announces its retries with a `max_attempts` attribute (the queues app's backends
    do); Django's own backends have none and never retry.
    """
    if context is None:
        return True
    backend = flush_impressions_task.get_backend()
    return context.attempt >= getattr(backend, "max_attempts", 1)


def enqueue_flush(delay=0, manual=False):
    """Enqueue the flush task `delay` seconds from now; `manual`: asked for by hand.

    A backend that cannot defer (ImmediateBackend) gets it without run_after: it runs now.
    """
    flush_task = flush_impressions_task
    if delay and flush_task.get_backend().supports_defer:
        flush_task = flush_task.using(run_after=timezone.now() + timedelta(seconds=delay))
    return flush_task.enqueue(manual=True) if manual else flush_task.enqueue()


def take_guard(client):
    """SET NX the schedule guard, its value the time (what the dashboard's "next flush" reads)."""
    return client.set(keys.guard_key(), f"{time.time():.3f}", nx=True, ex=conf.GUARD_TTL)


def rearm_after_failure(client):
    """After a failed flush: schedule another one so snapshots left behind are retried."""
    if not flush_impressions_task.get_backend().supports_defer:
        return False  # running it again right now would just fail again, recursively
    try:
        if take_guard(client):
            enqueue_flush(delay=conf.FLUSH_DELAY)
            return True
    except Exception:
        logger.exception("could not re-schedule the impressions flush")
    return False
