"""Impressions: count the posts a timeline served, buffer in Redis, flush to the database."""

from .viewers import record_request


def record(request, posts):
    """Count `posts` as seen by the request's viewer (see viewers.py); never raises into the view."""
    return record_request(request, posts)
