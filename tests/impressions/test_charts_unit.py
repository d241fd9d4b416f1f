"""Bar chart geometry: bars in % of the width, px of the height (pure, no services)."""

from datetime import date, timedelta

import pytest
from django.utils import translation

from impressions import charts
from impressions.charts import Point

START = date(2026, 11, 1)


def points_of(counts, start=START, pending=None):
    pending = pending or {}
    return [
        Point(start + timedelta(days=n), start + timedelta(days=n), count, pending.get(n, 0))
        for n, count in enumerate(counts)
    ]


@pytest.mark.parametrize(
    ("rough", "step"),
    [(0, 1), (0.3, 1), (1, 1), (1.5, 2), (3, 5), (7, 10), (10, 10), (11, 20), (250, 500)],
)
def test_nice_step(rough, step):
    assert charts.nice_step(rough) == step


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (950, "950"),
        (9999, "9,999"),
        (12_345, "12k"),
        (1_200_000, "1.2M"),
        (3_000_000, "3M"),
    ],
)
def test_axis_labels_are_compact(value, text, settings):
    settings.USE_THOUSAND_SEPARATOR = True
    assert charts.compact(value) == text


def test_axis_labels_follow_the_locale(settings):
    settings.USE_THOUSAND_SEPARATOR = True
    with translation.override("de"):
        assert [charts.compact(value) for value in (9999, 1_200_000, 3_000_000)] == [
            "9.999",
            "1,2M",
            "3M",
        ]
    settings.USE_THOUSAND_SEPARATOR = False
    assert charts.compact(9999) == "9999"  # as Django writes numbers in templates


def test_bars_are_proportional_stand_on_the_baseline_and_fill_the_width():
    chart = charts.bar_chart(points_of([10, 20, 0, 40]), title="t", height=240)
    assert [bar.count for bar in chart.bars] == [10, 20, 0, 40]
    # max 40 -> step 10 -> axis top 40; plot height 240 - 10 - 26 = 204 px
    assert [bar.height for bar in chart.bars] == [51, 102, 0, 204]
    for bar in chart.bars:
        assert bar.y + bar.height == pytest.approx(chart.bottom)
    # four slots of 25 % each, a bar 80 % of its slot, centred
    assert [bar.x for bar in chart.bars] == [2.5, 27.5, 52.5, 77.5]
    assert {bar.width for bar in chart.bars} == {20}
    assert chart.bars[-1].slot_x + chart.bars[-1].slot_width == 100
    assert [tick.value for tick in chart.ticks] == [0, 10, 20, 30, 40]
    assert chart.ticks[0].y == chart.bottom
    assert chart.ticks[-1].y == chart.top
    assert (chart.total, chart.peak) == (70, 40)


def test_pending_is_drawn_on_todays_flushed_part_and_marked():
    today = START + timedelta(days=2)
    chart = charts.bar_chart(points_of([10, 0, 30], pending={2: 10}), title="t", today=today)
    bar = chart.bars[2]
    assert (bar.today, bar.count, bar.pending) == (True, 40, 10)
    assert bar.pending_y + bar.pending_height == pytest.approx(bar.y)
    assert bar.pending_height == pytest.approx(bar.height / 3)
    assert bar.title == "Tue 2026-11-03: 40 impressions so far today, 10 of them not yet flushed"
    assert chart.bars[0].title == "Sun 2026-11-01: 10 impressions"
    assert chart.bars[1].title == "Mon 2026-11-02: 0 impressions"
    assert (chart.total, chart.pending, chart.peak) == (50, 10, 40)
    assert chart.summary.endswith("; 10 of them not yet flushed.")
    assert chart.x_labels[-1].text == "Today"


def test_axis_top_is_rounded_up_to_a_whole_step():
    chart = charts.bar_chart(points_of([3, 17]), title="t")
    assert [tick.value for tick in chart.ticks] == [0, 5, 10, 15, 20]
    assert chart.bars[1].height == pytest.approx(chart.plot_height * 17 / 20, abs=0.01)


def test_all_zero_and_empty_series_draw_without_dividing_by_zero():
    zero = charts.bar_chart(points_of([0, 0, 0]), title="t")
    assert [bar.height for bar in zero.bars] == [0, 0, 0]
    assert [tick.value for tick in zero.ticks] == [0, 1]
    assert zero.summary == "No impressions from 2026-11-01 to 2026-11-03."
    empty = charts.bar_chart([], title="t")
    assert empty.bars == [] and empty.total == 0 and empty.x_labels == []
    assert empty.summary == "No days to show, so no impressions."


def test_summary_names_total_peak_and_active_days(settings):
    settings.USE_THOUSAND_SEPARATOR = True
    chart = charts.bar_chart(points_of([5, 0, 1200, 1200]), title="t")
    # the first of two equal peaks is named
    assert chart.summary == (
        "2,405 impressions from 2026-11-01 to 2026-11-04; the busiest day was Tue 2026-11-03"
        " with 1,200; 3 of 4 days had impressions."
    )


def test_day_labels_are_spread_at_most_seven_and_stay_inside():
    chart = charts.bar_chart(points_of([1] * 90), title="t")
    assert 1 < len(chart.x_labels) <= charts.MAX_X_LABELS
    assert chart.x_labels[0].text == "Nov 1"
    assert chart.x_labels[0].anchor == "start"
    assert all(0 <= label.x <= 100 for label in chart.x_labels)
    xs = [label.x for label in chart.x_labels]
    assert xs == sorted(xs)
    one = charts.bar_chart(points_of([4]), title="t")
    assert [label.text for label in one.x_labels] == ["Nov 1"]
    assert one.bars[0].width == 80  # one wide bar, not a sliver


def test_month_bars():
    months = [
        Point(date(2026, 1, 1), date(2026, 1, 31), 300),
        Point(date(2026, 2, 1), date(2026, 2, 28), 0),
        Point(date(2026, 3, 1), date(2026, 3, 10), 20, 5),
    ]
    chart = charts.bar_chart(months, title="t", today=date(2026, 3, 10))
    assert chart.by_month
    assert [bar.label for bar in chart.bars] == ["Jan 2026", "Feb 2026", "Mar 2026"]
    assert [label.text for label in chart.x_labels] == ["Jan 2026", "Feb", "This month"]
    assert chart.bars[2].today
    assert chart.summary.startswith(
        "325 impressions from 2026-01-01 to 2026-03-10; the busiest month"
    )
