"""Calendar periods and the cover of a range (pure, no services)."""

import random
from datetime import date, timedelta

import pytest

from impressions import periods
from impressions.periods import DAY, MONTH, WEEK, Piece


def test_week_and_month_keys():
    assert periods.week_of(date(2026, 11, 18)) == date(2026, 11, 16)  # a Wednesday -> Monday
    assert periods.week_of(date(2026, 11, 16)) == date(2026, 11, 16)
    assert periods.week_of(date(2027, 1, 2)) == date(2026, 12, 28)  # weeks cross the year
    assert periods.month_of(date(2026, 11, 18)) == date(2026, 11, 1)
    assert periods.next_month(date(2026, 12, 1)) == date(2027, 1, 1)
    assert Piece(MONTH, date(2028, 2, 1)).end == date(2028, 2, 29)
    assert Piece(WEEK, date(2026, 11, 16)).end == date(2026, 11, 22)


def test_cover_uses_whole_months_then_weeks_then_days():
    # Saturday 2026-09-26 .. Wednesday 2026-12-09.
    assert periods.cover(date(2026, 9, 26), date(2026, 12, 9)) == [
        Piece(DAY, date(2026, 9, 26)),
        Piece(DAY, date(2026, 9, 27)),
        Piece(DAY, date(2026, 9, 28)),  # Monday, but its week would run into October
        Piece(DAY, date(2026, 9, 29)),
        Piece(DAY, date(2026, 9, 30)),
        Piece(MONTH, date(2026, 10, 1)),
        Piece(MONTH, date(2026, 11, 1)),
        Piece(DAY, date(2026, 12, 1)),  # Tuesday
        *(Piece(DAY, date(2026, 12, d)) for d in range(2, 7)),
        Piece(DAY, date(2026, 12, 7)),  # Monday, but the week would end after the 9th
        Piece(DAY, date(2026, 12, 8)),
        Piece(DAY, date(2026, 12, 9)),
    ]


def test_cover_exact_pieces_of_a_short_range():
    # Tuesday 2026-11-03 .. Thursday 2026-11-19: no whole month.
    assert periods.cover(date(2026, 11, 3), date(2026, 11, 19)) == [
        *(Piece(DAY, date(2026, 11, d)) for d in range(3, 9)),
        Piece(WEEK, date(2026, 11, 9)),
        Piece(DAY, date(2026, 11, 16)),
        Piece(DAY, date(2026, 11, 17)),
        Piece(DAY, date(2026, 11, 18)),
        Piece(DAY, date(2026, 11, 19)),
    ]


def test_cover_of_one_day_and_of_an_empty_range():
    assert periods.cover(date(2026, 11, 1), date(2026, 11, 1)) == [Piece(DAY, date(2026, 11, 1))]
    assert periods.cover(date(2026, 11, 2), date(2026, 11, 1)) == []


@pytest.mark.parametrize("seed", range(20))
def test_cover_tiles_the_range_exactly_once(seed):
    rng = random.Random(seed)
    start = date(2025, 1, 1) + timedelta(days=rng.randrange(700))
    end = start + timedelta(days=rng.randrange(400))
    pieces = periods.cover(start, end)
    covered = [day for piece in pieces for day in periods.days(piece.start, piece.end)]
    assert covered == periods.days(start, end)  # in order, no gap, no overlap
    for piece in pieces:
        if piece.period == WEEK:
            assert piece.start.weekday() == 0
        if piece.period == MONTH:
            assert piece.start.day == 1
    # Few pieces: at most 6 + 4 + 6 around whole months and 6 + 4 + 6 around them.
    assert len(pieces) <= 2 * (6 + 4 + 6) + (end - start).days // 28 + 1
