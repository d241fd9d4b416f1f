"""The public API of the impressions app: what a site needs from the buffer, and nothing more."""

import logging

from .recorder import BufferStatus, buffer_status, pending_counts
from .redis_client import get_client
from .stats import history, top_posts
from .viewers import record_request

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
    """Count `posts` as seen by the request's viewer (see viewers.py); never raises into the view."""
    return record_request(request, posts)


def ping(timeout=None):
    """PING the buffer's Redis; returns the client's kind, raises when Redis does not answer."""
    client = get_client(timeout)
    client.ping()
    return type(client).__name__
