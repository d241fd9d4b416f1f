"""The dashboard's date range parsing and duration text (pure, no services)."""

from datetime import date, timedelta

import pytest

from impressions.dashboard import BadRange, DateRange, duration_text, parse_range

TODAY = date(2026, 11, 18)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, DateRange(date(2026, 10, 20), TODAY, 30)),
        ({"days": "7"}, DateRange(date(2026, 11, 12), TODAY, 7)),
        ({"days": "90"}, DateRange(date(2026, 8, 21), TODAY, 90)),
        (
            {"from": "2026-01-01", "to": "2026-01-31"},
            DateRange(date(2026, 1, 1), date(2026, 1, 31), None),
        ),
        ({"from": "2026-11-01"}, DateRange(date(2026, 11, 1), TODAY, None)),
        ({"from": "2026-11-18", "to": "2026-11-18", "days": "7"}, DateRange(TODAY, TODAY, None)),
    ],
)
def test_good_ranges(params, expected):
    assert parse_range(params, TODAY) == expected


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"days": "31"}, "days must be one of 7, 30, 90, not '31'."),
        ({"days": "x" * 500}, "days must be one of 7, 30, 90, not 'xxxxxxxxxxxxxxxxxxxx'."),
        ({"from": "2026-13-01"}, "from must be a date as YYYY-MM-DD, not '2026-13-01'."),
        ({"from": "yesterday"}, "from must be a date as YYYY-MM-DD, not 'yesterday'."),
        (
            {"from": "2026-11-10", "to": "2026-11-02"},
            "The start 2026-11-10 is after the end 2026-11-02.",
        ),
        (
            {"from": "2026-11-10", "to": "2026-11-19"},
            "The end 2026-11-19 is in the future (today is 2026-11-18).",
        ),
        ({"from": "2020-01-01", "to": "2026-11-18"}, "A range can be at most 731 days long."),
    ],
)
def test_bad_ranges_say_why(params, message):
    with pytest.raises(BadRange) as raised:
        parse_range(params, TODAY)
    assert str(raised.value) == message


def test_range_query_round_trips():
    for params in ({"days": "7"}, {"from": "2026-01-01", "to": "2026-02-03"}):
        date_range = parse_range(params, TODAY)
        again = dict(part.split("=") for part in date_range.query().split("&"))
        assert parse_range(again, TODAY) == date_range


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-3, "0 s"),
        (42, "42 s"),
        (600, "10 min"),
        (3 * 3600 + 120, "3 h 2 min"),
        (50 * 3600, "2 days 2 h"),
    ],
)
def test_duration_text(seconds, text):
    assert duration_text(timedelta(seconds=seconds)) == text
