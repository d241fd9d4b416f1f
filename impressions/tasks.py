"""The flush as a django.tasks task, enqueued by the first impression of a window."""

import logging

from django.tasks import task

from .exceptions import FlushError

logger = logging.getLogger(__name__)


@task
def flush_impressions_task():
    """Flush pending impressions; on failure schedule a retry so nothing stays stranded."""
    from .flush import flush_pending
    from .recorder import get_flush_client
    from .schedule import rearm_after_failure

    try:
        report = flush_pending()
    except FlushError:
        try:
            rearm_after_failure(get_flush_client())
        except Exception:
            logger.exception("could not re-schedule the impressions flush")
        raise
    return report.as_dict()
