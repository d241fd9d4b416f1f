"""The dashboard's date ranges, totals, duration text and CSV cells (pure, no services)."""

from datetime import date, timedelta

import pytest

from impressions.dashboard import as_text, duration_text, next_flush, run_time_text
from impressions.live import Buffer, RangeTotal, range_total, with_pending
from impressions.ranges import BadRange, DateRange, parse_range

TODAY = date(2026, 11, 18)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, DateRange(date(2026, 10, 20), TODAY, "30d")),
        ({"range": "today"}, DateRange(TODAY, TODAY, "today")),
        ({"range": "yesterday"}, DateRange(date(2026, 11, 17), date(2026, 11, 17), "yesterday")),
        ({"range": "7d"}, DateRange(date(2026, 11, 12), TODAY, "7d")),
        ({"range": "90d"}, DateRange(date(2026, 8, 21), TODAY, "90d")),
        ({"range": "12mo"}, DateRange(date(2025, 12, 1), TODAY, "12mo")),
        ({"days": "7"}, DateRange(date(2026, 11, 12), TODAY, "7d")),  # links from before
        ({"days": "90"}, DateRange(date(2026, 8, 21), TODAY, "90d")),
        (
            {"from": "2026-01-01", "to": "2026-01-31"},
            DateRange(date(2026, 1, 1), date(2026, 1, 31)),
        ),
        ({"from": "2026-11-01"}, DateRange(date(2026, 11, 1), TODAY)),
        ({"from": "2026-11-18", "to": "2026-11-18", "range": "7d"}, DateRange(TODAY, TODAY)),
    ],
)
def test_good_ranges(params, expected):
    assert parse_range(params, TODAY) == expected


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"days": "31"}, "days must be one of 7, 30, 90, not '31'."),
        (
            {"range": "x" * 500},
            "range must be one of today, yesterday, 7d, 30d, 90d, 12mo, not 'xxxxxxxxxxxxxxxxxxxx'.",
        ),
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
        (
            {"from": "0001-01-01", "to": "0001-01-02"},
            "The start 0001-01-01 is too early: the period before it, which the change is"
            " measured against, would begin before 0001-01-01.",
        ),
        ({"to": "9999-12-31"}, "The end 9999-12-31 is in the future (today is 2026-11-18)."),
        ({"from": "9999-12-31"}, "The start 9999-12-31 is after the end 2026-11-18."),
    ],
)
def test_bad_ranges_say_why(params, message):
    with pytest.raises(BadRange) as raised:
        parse_range(params, TODAY)
    assert str(raised.value) == message


def test_the_earliest_range_has_a_period_before():
    date_range = parse_range({"from": "0001-01-03", "to": "0001-01-04"}, TODAY)
    assert date_range.previous() == DateRange(date(1, 1, 1), date(1, 1, 2))


def test_range_query_round_trips():
    for params in ({"range": "7d"}, {"range": "12mo"}, {"from": "2026-01-01", "to": "2026-02-03"}):
        date_range = parse_range(params, TODAY)
        again = dict(part.split("=") for part in date_range.query().split("&"))
        assert parse_range(again, TODAY) == date_range


@pytest.mark.parametrize(
    ("params", "previous", "label"),
    [
        ({"range": "today"}, (date(2026, 11, 17), date(2026, 11, 17)), "today"),
        ({"range": "7d"}, (date(2026, 11, 5), date(2026, 11, 11)), "the last 7 days"),
        # 2025-12-01 to today: 353 days, against the 353 before (not the 365 of Dec to Nov).
        ({"range": "12mo"}, (date(2024, 12, 13), date(2025, 11, 30)), "the last 12 months"),
        (
            {"from": "2026-11-01", "to": "2026-11-10"},
            (date(2026, 10, 22), date(2026, 10, 31)),
            "2026-11-01 to 2026-11-10",
        ),
    ],
)
def test_the_period_before_has_the_same_length(params, previous, label):
    date_range = parse_range(params, TODAY)
    before = date_range.previous()
    assert (before.start, before.end) == previous
    assert date_range.label == label
    assert before.length == date_range.length


@pytest.mark.parametrize(
    ("params", "during"),
    [
        ({"range": "today"}, "today"),
        ({"range": "yesterday"}, "yesterday"),
        ({"range": "30d"}, "in the last 30 days"),
        ({"from": "2026-11-01", "to": "2026-11-01"}, "on 2026-11-01"),
        ({"from": "2026-11-01", "to": "2026-11-10"}, "from 2026-11-01 to 2026-11-10"),
    ],
)
def test_the_range_after_a_verb(params, during):
    assert parse_range(params, TODAY).during == during


def test_long_ranges_draw_months():
    assert not parse_range({"range": "90d"}, TODAY).by_month
    assert parse_range({"range": "12mo"}, TODAY).by_month


class Status:
    pending_impressions = 7
    in_snapshots = 3


@pytest.mark.parametrize(
    ("flushed", "previous", "change", "direction", "text"),
    [
        (110, 100, 10, "up", "+10%"),
        (80, 100, -20, "down", "-20%"),
        (100, 100, 0, "flat", "no change"),
    ],
)
def test_a_range_total_against_the_period_before(flushed, previous, change, direction, text):
    total = range_total(flushed - 10, previous, parse_range({}, TODAY), TODAY, Buffer(Status()))
    assert (total.total, total.pending) == (flushed, 10)
    assert (total.change, total.direction, total.change_text) == (change, direction, text)
    assert total.previous_label == "2026-09-20 to 2026-10-19"


def test_pending_counts_only_for_a_range_that_holds_today():
    yesterday = parse_range({"range": "yesterday"}, TODAY)
    total = range_total(5, 0, yesterday, TODAY, Buffer(Status()))
    assert (total.total, total.pending, total.change, total.direction) == (5, 0, None, "new")
    assert (
        range_total(5, 0, parse_range({}, TODAY), TODAY, Buffer(error="ConnectionError")).total == 5
    )


def test_live_rows_are_ranked_by_the_live_count(settings):
    settings.USE_THOUSAND_SEPARATOR = True
    assert with_pending([(1, 10), (2, 9), (3, 9)], {3: 2, 9: 5}) == [
        (3, 11, 2),
        (1, 10, 0),
        (2, 9, 0),
    ]
    assert RangeTotal(1234, 5, 0, "x").total_text == "1,234"


def test_no_flush_scheduled_is_a_warning_only_while_impressions_are_pending(settings):
    settings.USE_THOUSAND_SEPARATOR = True
    assert next_flush(False, 0) is None
    assert next_flush(False, 1) == {
        "at": None,
        "text": "none scheduled, yet 1 impression is pending",
        "overdue": True,
        "stalled": True,
        "snapshots": False,
    }
    assert next_flush(False, 1234)["text"] == "none scheduled, yet 1,234 impressions are pending"
    # Nothing pending, but a failed flush's snapshots hold counts no flush is coming for.
    assert next_flush(False, 0, 1)["text"] == (
        "none scheduled, yet 1 impression waits in the snapshots of a flush that did not finish"
    )
    assert next_flush(False, 3, 1234)["snapshots"] is False  # pending: the stalled words
    assert next_flush(False, 0, 1234)["snapshots"] is True


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


@pytest.mark.parametrize(
    ("ms", "text"), [(0.4, "0 ms"), (412, "412 ms"), (3240, "3.2 s"), (125_000, "2 min 5 s")]
)
def test_run_time_text(ms, text):
    assert run_time_text(timedelta(milliseconds=ms)) == text


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("A post = 1 + 1", "A post = 1 + 1"),  # only a leading character makes a formula
        ("", ""),
    ],
)
def test_a_csv_cell_a_spreadsheet_would_run_is_kept_as_text(cell, shown):
    assert as_text(cell) == shown
