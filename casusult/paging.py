"""Keyset (cursor) paging of the timeline on (created_at, id), newest first: no COUNT, no OFFSET."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.core import signing
from django.db.models import Q

PAGE_SIZE = 20
# The cursor format's version: a format change makes old cursors a clean 400, not a wrong page.
CURSOR_VERSION = 1
CURSOR_SALT = "casusult.paging.cursor"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Bounds of what a cursor may name: timestamps inside datetime's range, ids of a bigint column.
MIN_MICROSECONDS = (datetime.min.replace(tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
MAX_MICROSECONDS = (datetime.max.replace(tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
MAX_ID = 2**63 - 1


class BadCursor(ValueError):
    """The cursor is not one this site made (malformed, tampered with, or out of range)."""


@dataclass(frozen=True)
class Position:
    """Where a page ends: the (created_at, id) of its last post; the next page starts after it."""

    created_at: datetime
    id: int

    @classmethod
    def of(cls, post):
        return cls(post.created_at, post.pk)


@dataclass(frozen=True)
class Page:
    items: list
    next_cursor: str | None  # None on the last page
    is_first: bool


def encode_cursor(position):
    """An opaque, signed cursor: base64 JSON [version, microseconds since the epoch, id] + HMAC."""
    micros = (position.created_at - EPOCH) // timedelta(microseconds=1)
    return signing.Signer(salt=CURSOR_SALT).sign_object([CURSOR_VERSION, micros, position.id])


def decode_cursor(cursor):
    """The Position a cursor names; raises BadCursor for anything this site did not make."""
    if len(cursor) > 200:
        raise BadCursor("the cursor is too long to be one of ours")
    try:
        value = signing.Signer(salt=CURSOR_SALT).unsign_object(cursor)
    except (signing.BadSignature, ValueError, UnicodeError):
        raise BadCursor("the cursor is malformed or was altered") from None
    if not (
        isinstance(value, list)
        and len(value) == 3
        and all(type(part) is int for part in value)
        and value[0] == CURSOR_VERSION
    ):
        raise BadCursor("the cursor is from another version of this site")
    _, micros, post_id = value
    if not (MIN_MICROSECONDS <= micros <= MAX_MICROSECONDS and 1 <= post_id <= MAX_ID):
        raise BadCursor("the cursor points outside the timeline")
    return Position(EPOCH + timedelta(microseconds=micros), post_id)


def page_after(queryset, position, size=PAGE_SIZE):
    """The `size` posts after `position` (None: the newest), newest first, and the next cursor.

    `created_at <= t` is the index range the scan starts from; the OR drops the ties on
    `created_at` already served. One `LIMIT size + 1` tells whether a next page exists.
    """
    if position is not None:
        queryset = queryset.filter(created_at__lte=position.created_at).filter(
            Q(created_at__lt=position.created_at)
            | Q(created_at=position.created_at, id__lt=position.id)
        )
    rows = list(queryset.order_by("-created_at", "-id")[: size + 1])
    items = rows[:size]
    next_cursor = encode_cursor(Position.of(items[-1])) if len(rows) > size else None
    return Page(items, next_cursor, is_first=position is None)
