"""SVG bar chart geometry (pure, no services)."""

from datetime import date, timedelta

import pytest

from impressions import charts


def series_of(counts, start=date(2026, 11, 1)):
    return [(start + timedelta(days=n), count) for n, count in enumerate(counts)]


@pytest.mark.parametrize(
    ("rough", "step"),
    [(0, 1), (0.3, 1), (1, 1), (1.5, 2), (3, 5), (7, 10), (10, 10), (11, 20), (250, 500)],
)
def test_nice_step(rough, step):
    assert charts.nice_step(rough) == step


def test_bars_are_proportional_and_stand_on_the_baseline():
    chart = charts.bar_chart(series_of([10, 20, 0, 40]), title="t", width=456, height=240)
    assert [bar.count for bar in chart.bars] == [10, 20, 0, 40]
    # max 40 -> step 10 -> axis top 40; plot height 240 - 12 - 28 = 200
    assert [bar.height for bar in chart.bars] == [50, 100, 0, 200]
    for bar in chart.bars:
        assert bar.y + bar.height == pytest.approx(chart.bottom)
    # four slots of 100 px between x = 56 and 456 - 12 = 444 ... (388 / 4 = 97)
    xs = [bar.x for bar in chart.bars]
    assert xs == sorted(xs)
    assert xs[0] >= chart.left
    assert chart.bars[-1].x + chart.bars[-1].width <= chart.right
    assert [tick.value for tick in chart.ticks] == [0, 10, 20, 30, 40]
    assert chart.ticks[0].y == chart.bottom
    assert chart.ticks[-1].y == chart.top
    assert (chart.total, chart.peak) == (70, 40)


def test_axis_top_is_rounded_up_to_a_whole_step():
    chart = charts.bar_chart(series_of([3, 17]), title="t")
    assert [tick.value for tick in chart.ticks] == [0, 5, 10, 15, 20]
    assert chart.bars[1].height == pytest.approx((chart.bottom - chart.top) * 17 / 20, abs=0.01)


def test_all_zero_and_empty_series_draw_without_dividing_by_zero():
    zero = charts.bar_chart(series_of([0, 0, 0]), title="t")
    assert [bar.height for bar in zero.bars] == [0, 0, 0]
    assert [tick.value for tick in zero.ticks] == [0, 1]
    assert zero.summary == "No impressions from 2026-11-01 to 2026-11-03."
    empty = charts.bar_chart([], title="t")
    assert empty.bars == [] and empty.total == 0
    assert empty.summary == "No days to show, so no impressions."


def test_summary_names_total_peak_and_active_days():
    chart = charts.bar_chart(series_of([5, 0, 1200, 1200]), title="t")
    # the first of two equal peaks is named
    assert chart.summary == (
        "2,405 impressions from 2026-11-01 to 2026-11-04; the busiest day was 2026-11-03"
        " with 1,200; 3 of 4 days had impressions."
    )


def test_day_labels_are_spread_and_at_most_seven():
    chart = charts.bar_chart(series_of([1] * 90), title="t")
    assert 1 < len(chart.x_labels) <= charts.MAX_X_LABELS
    assert chart.x_labels[0].text == "Nov 1"
    xs = [label.x for label in chart.x_labels]
    assert xs == sorted(xs)
    one = charts.bar_chart(series_of([4]), title="t")
    assert [label.text for label in one.x_labels] == ["Nov 1"]
    assert one.bars[0].width > 100  # one wide bar, not a sliver


def test_many_bars_stay_at_least_one_unit_wide():
    chart = charts.bar_chart(series_of([1] * 731), title="t", width=720)
    assert min(bar.width for bar in chart.bars) >= 1
