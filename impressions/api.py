"""The public API of the impressions app: what a site needs from the buffer, and nothing more."""

import hashlib
import logging

from .conf import conf
from .recorder import BufferStatus, buffer_status, pending_counts, record_impressions
from .redis_client import get_client
from .stats import history, top_posts

__all__ = [
    "BufferStatus",
    "buffer_status",
    "history",
    "pending_counts",
    "ping",
    "record",
    "top_posts",
]

logger = logging.getLogger(__name__)


def record(request, posts):
    """Count `posts` as seen by the request's viewer; never raises into the view."""
    try:
        post_ids = [post.pk for post in posts]
        if not post_ids:
            return None
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            viewer_key = f"u:{user.pk}"
        elif conf.COUNT_ANONYMOUS:
            if request.session.session_key is None:
                request.session.save()  # gives the visitor a session (and cookie) to count by
            viewer_key = f"s:{anonymous_viewer_id(request.session.session_key)}"
        else:
            return None
        return record_impressions(viewer_key, post_ids)
    except Exception:
        logger.exception("recording impressions failed; the page is served without them")
        return None


def anonymous_viewer_id(session_key):
    """A digest of the session key: key names and logs must not carry a usable session key."""
    return hashlib.blake2b(session_key.encode(), digest_size=12).hexdigest()


def ping(timeout=None):
    """PING the buffer's Redis; returns the client's kind, raises when Redis does not answer."""
    client = get_client(timeout)
    client.ping()
    return type(client).__name__
