"""Cursor encoding on its own: round trips, and every kind of bad cursor is a BadCursor."""

from datetime import UTC, datetime

import pytest
from django.core import signing

from casusult.paging import (
    CURSOR_SALT,
    MAX_MICROSECONDS,
    BadCursor,
    Position,
    decode_cursor,
    encode_cursor,
)


def signed(value):
    """A cursor this site's key signed, whatever it holds: tests the checks after the signature."""
    return signing.Signer(salt=CURSOR_SALT).sign_object(value)


@pytest.mark.parametrize(
    "position",
    [
        Position(datetime(2026, 11, 28, 12, 30, 1, 123456, tzinfo=UTC), 42),
        Position(datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), 1),
        Position(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), 2**63 - 1),
        Position(datetime(1, 1, 1, tzinfo=UTC), 7),
    ],
)
def test_a_cursor_names_its_position_exactly(position):
    assert decode_cursor(encode_cursor(position)) == position


def test_a_cursor_is_opaque():
    cursor = encode_cursor(Position(datetime(2026, 11, 28, tzinfo=UTC), 12345))
    assert "12345" not in cursor and "2026" not in cursor


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([2, 0, 1], "another version"),
        ([1, 0], "another version"),
        ({"p": 1}, "another version"),
        ([1, 0, "1"], "another version"),
        ([1, 0.5, 1], "another version"),
        ([1, True, 1], "another version"),
        ([1, 0, 0], "outside"),
        ([1, 0, -5], "outside"),
        ([1, 0, 2**63], "outside"),
        ([1, MAX_MICROSECONDS + 1, 1], "outside"),
        ([1, -(10**20), 1], "outside"),
    ],
)
def test_signed_but_wrong_content_is_a_bad_cursor(value, message):
    with pytest.raises(BadCursor, match=message):
        decode_cursor(signed(value))


@pytest.mark.parametrize("cursor", ["", ":", "abc", "abc:def", "x" * 201, "\u2603:\u2603"])
def test_unsigned_or_oversized_text_is_a_bad_cursor(cursor):
    with pytest.raises(BadCursor):
        decode_cursor(cursor)


def test_another_secret_key_makes_a_bad_cursor(settings):
    cursor = encode_cursor(Position(datetime(2026, 1, 1, tzinfo=UTC), 3))
    settings.SECRET_KEY = "another-secret-key-entirely"
    with pytest.raises(BadCursor, match="altered"):
        decode_cursor(cursor)
