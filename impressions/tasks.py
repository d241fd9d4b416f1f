"""The flush as a django.tasks task, and enqueueing it: now, after the window, or after a failure."""

import logging
from datetime import timedelta

from django.tasks import task
from django.utils import timezone

from . import keys
from .conf import conf
from .exceptions import FlushError
from .flush import flush_pending
from .redis_client import get_flush_client

logger = logging.getLogger(__name__)


@task
def flush_impressions_task():
    """Flush pending impressions; on failure schedule a retry so nothing stays stranded."""
    try:
        report = flush_pending()
    except FlushError:
        try:
            rearm_after_failure(get_flush_client())
        except Exception:
            logger.exception("could not re-schedule the impressions flush")
        raise
    return report.as_dict()


def enqueue_flush(delay=0):
    """Enqueue the flush task `delay` seconds from now.

    A backend that cannot defer (ImmediateBackend) gets it without run_after: it runs now.
    """
    flush_task = flush_impressions_task
    if delay and flush_task.get_backend().supports_defer:
        flush_task = flush_task.using(run_after=timezone.now() + timedelta(seconds=delay))
    return flush_task.enqueue()


def rearm_after_failure(client):
    """After a failed flush: schedule another one so snapshots left behind are retried."""
    if not flush_impressions_task.get_backend().supports_defer:
        return False  # running it again right now would just fail again, recursively
    try:
        if client.set(keys.guard_key(), "1", nx=True, ex=conf.GUARD_TTL):
            enqueue_flush(delay=conf.FLUSH_DELAY)
            return True
    except Exception:
        logger.exception("could not re-schedule the impressions flush")
    return False
