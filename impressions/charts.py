"""Geometry of the server-drawn SVG bar charts (pure: numbers in, coordinates out)."""

import math
from dataclasses import dataclass

WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

# Room for the y-axis labels on the left and the day labels below the bars.
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 28
MAX_X_LABELS = 7
Y_TICKS = 4


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    day: object  # datetime.date
    count: int

    # Ready-made text: the template's date filter would cost more than the whole geometry.
    @property
    def iso(self):
        return self.day.isoformat()

    @property
    def label(self):
        return f"{WEEKDAYS[self.day.weekday()]} {self.day.isoformat()}"


@dataclass(frozen=True)
class Tick:
    y: float
    value: int


@dataclass(frozen=True)
class XLabel:
    x: float
    text: str


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float  # the baseline: y of a zero count
    bars: list
    ticks: list
    x_labels: list
    title: str
    summary: str
    total: int
    peak: int


def nice_step(rough):
    """The smallest 1, 2 or 5 x 10**n that is >= `rough` (at least 1: counts are whole)."""
    if rough <= 1:
        return 1
    power = 10 ** math.floor(math.log10(rough))
    for factor in (1, 2, 5, 10):
        if factor * power >= rough:
            return factor * power
    return 10 * power  # pragma: no cover (the loop always returns)


def day_label(day):
    return f"{MONTHS[day.month - 1]} {day.day}"


def summary_of(series, noun):
    """One sentence that says what the chart shows, for screen readers and the caption."""
    if not series:
        return f"No days to show, so no {noun}."
    total = sum(count for _, count in series)
    first, last = series[0][0], series[-1][0]
    span = f"from {first.isoformat()} to {last.isoformat()}"
    if total == 0:
        return f"No {noun} {span}."
    peak_day, peak = max(series, key=lambda point: (point[1], -point[0].toordinal()))
    active = sum(1 for _, count in series if count)
    return (
        f"{total:,} {noun} {span}; the busiest day was {peak_day.isoformat()} with {peak:,};"
        f" {active} of {len(series)} days had {noun}."
    )


def bar_chart(series, *, title, noun="impressions", width=720, height=220):
    """A bar per (day, count) of `series`, scaled under a rounded-up maximum with y ticks."""
    counts = [count for _, count in series]
    peak = max(counts, default=0)
    step = nice_step(peak / Y_TICKS)
    top_value = max(step, math.ceil(peak / step) * step)
    plot_left, plot_right = LEFT, width - RIGHT
    plot_top, baseline = TOP, height - BOTTOM
    plot_height = baseline - plot_top
    slot = (plot_right - plot_left) / max(len(series), 1)
    bar_width = max(slot * 0.8, 1.0)

    bars = []
    for index, (day, count) in enumerate(series):
        bar_height = plot_height * count / top_value
        x = plot_left + index * slot + (slot - bar_width) / 2
        bars.append(
            Bar(_r(x), _r(baseline - bar_height), _r(bar_width), _r(bar_height), day, count)
        )
    ticks = [
        Tick(_r(baseline - plot_height * value / top_value), value)
        for value in range(0, top_value + 1, step)
    ]
    every = max(1, math.ceil(len(series) / MAX_X_LABELS))
    x_labels = [
        XLabel(_r(plot_left + index * slot + slot / 2), day_label(day))
        for index, (day, _) in enumerate(series)
        if index % every == 0
    ]
    return BarChart(
        width=width,
        height=height,
        left=plot_left,
        right=plot_right,
        top=plot_top,
        bottom=baseline,
        bars=bars,
        ticks=ticks,
        x_labels=x_labels,
        title=title,
        summary=summary_of(series, noun),
        total=sum(counts),
        peak=peak,
    )


def _r(value):
    return round(value, 2)
