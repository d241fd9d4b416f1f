"""Impressions: count the posts a timeline served, buffer in Redis, flush to the database."""

# The distribution's version (distributions/impressions/pyproject.toml reads it), semantic.
__version__ = "0.1.0"

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # type checkers see the API's own signatures; at run time __getattr__ below
    from .api import (
        BufferStatus,
        CountedObject,
        RecordResult,
        arecord,
        buffer_status,
        clock_offset,
        history,
        pending_counts,
        ping,
        record,
        top_posts,
    )

# The public API (impressions/api.py), reachable as impressions.record etc.
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


def __getattr__(name: str) -> object:
    # Django imports this package while it loads apps, before models are ready, and the API
    # reaches the models: so the API is imported on first use (PEP 562), not here.
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
