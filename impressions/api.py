"""The public API of the impressions app: what a site needs from the buffer, and nothing more.

Typed (`py.typed`; `mypy --strict` in make lint): these signatures and result types are the
contract; the modules behind them are internal.
"""

from collections.abc import Iterable
from datetime import date
from typing import Protocol

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest

from redis_endpoints import redacting_logger

from . import clocks, recorder, stats, viewers
from .http import http_request
from .recorder import BufferStatus, RecordResult
from .redis_client import get_client, release_thread_connections

__all__ = [
    "BufferStatus",
    "CountedObject",
    "RecordResult",
    "arecord",
    "buffer_status",
    "clock_offset",
    "history",
    "pending_counts",
    "ping",
    "record",
    "top_posts",
]

logger = redacting_logger(__name__)


class CountedObject(Protocol):
    """What `record` counts: an instance of IMPRESSIONS_MODEL (only its integer pk is read)."""

    @property
    def pk(self) -> int | None: ...


def record(
    request: HttpRequest, posts: Iterable[CountedObject] | CountedObject
) -> RecordResult | None:
    """Count `posts` (the objects a page shows, or a detail page's one object) as seen by the
    request's viewer (see viewers.py); never raises into the view.

    None: nothing was recorded (recording is off, nothing was served, or the request is no
    view: a bot, a prefetch, an image or script load, not a GET), and for a page loaded into a
    frame, counted by VisitorCookieMiddleware once the response shows whether the frame may show
    it; else what was counted, lost and scheduled.
    """
    try:
        result: RecordResult | None = viewers.record_request(request, posts)
    finally:
        if isinstance(http_request(request), ASGIRequest):
            # Django runs an ASGI request's sync work in a thread that ends with the request:
            # the connection it kept would stay taken while an async view awaits on, and some
            # 100 such requests at once (redis-py's pool) would lose every later one's counts.
            release_thread_connections()
    return result


async def arecord(
    request: HttpRequest, posts: Iterable[CountedObject] | CountedObject
) -> RecordResult | None:
    """record() for an async view: it reads the session and calls Redis, both blocking, so it
    runs in Django's thread for the request's sync work, never on the event loop (there a
    logged-in viewer's session could not be read, and a slow Redis or task backend would hold
    up every other request). `posts` must be evaluated already (a list, not a QuerySet)."""
    result: RecordResult | None = await sync_to_async(record)(request, posts)
    return result


def pending_counts(post_ids: Iterable[int]) -> dict[int, int]:
    """{object id: count still in Redis} for these ids, one pipelined round trip per node.

    Raises redis errors (redis.RedisError).
    """
    counts: dict[int, int] = recorder.pending_counts(post_ids)
    return counts


def buffer_status(timeout: float | None = None) -> BufferStatus:
    """The buffer's totals over every shard; raises redis errors."""
    status: BufferStatus = recorder.buffer_status(timeout)
    return status


def clock_offset() -> float | None:
    """This host's clock minus Redis's, in seconds, as this process last measured it (its record
    calls, its flushes); None before it has."""
    seconds: float | None = clocks.offset.seconds
    return seconds


def ping(timeout: float | None = None) -> str:
    """PING the buffer's Redis; returns the client's kind, raises when Redis does not answer."""
    client = get_client(timeout)
    client.ping()
    return type(client).__name__


def history(post_ids: Iterable[int], start: date, end: date) -> dict[int, dict[date, int]]:
    """{object id: {day: count}} for start..end inclusive; days without impressions left out."""
    days: dict[int, dict[date, int]] = stats.history(post_ids, start, end)
    return days


def top_posts(start: date, end: date, limit: int = 10) -> list[tuple[int, int]]:
    """[(object id, count), …] with the most impressions in start..end, highest first."""
    top: list[tuple[int, int]] = stats.top_posts(start, end, limit)
    return top
