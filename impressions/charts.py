"""Geometry of the server-drawn bar charts (pure: numbers in, coordinates out).

Bars are placed in percent of the plot's width and in px of its height, in an SVG without a
viewBox: the chart stretches to any width while its text keeps the page's font size (a scaled
viewBox drew 11 px labels at 5.5 px on a phone). The y-axis labels are a column of their own.
"""

import math
from dataclasses import dataclass
from datetime import date

from django.utils.dates import MONTHS_3, WEEKDAYS_ABBR
from django.utils.formats import number_format
from django.utils.translation import gettext, ngettext

HEIGHT = 220  # px
TOP, BOTTOM = 10, 26  # px above the tallest bar, and below the baseline for the day labels
MAX_X_LABELS = 7
Y_TICKS = 4
BAR_SHARE = 0.8  # of its slot


@dataclass(frozen=True)
class Point:
    """One bar's data: the days it covers (one day, or a month) and its impressions."""

    start: date
    end: date
    count: int  # flushed: in the history
    pending: int = 0  # recorded in Redis, not yet flushed (today's bar only)

    @property
    def total(self):
        return self.count + self.pending


@dataclass(frozen=True)
class Bar:
    slot_x: float  # % of the plot's width where the bar's slot starts
    slot_width: float  # %
    x: float  # %
    width: float  # %
    y: float  # px: top of the flushed part
    height: float  # px
    pending_y: float  # px: top of the pending part, drawn on the flushed one
    pending_height: float  # px
    point: Point
    today: bool

    # Ready-made text: the template's date filter would cost more than the whole geometry.
    @property
    def iso(self):
        return self.point.start.isoformat()

    @property
    def count(self):
        return self.point.total

    @property
    def pending(self):
        return self.point.pending

    @property
    def label(self):
        return period_label(self.point)

    @property
    def title(self):
        """The bar's value, on hover and for screen readers."""
        point = self.point
        values = {
            "label": self.label,
            "count": number_format(point.total),
            "pending": number_format(point.pending) if point.pending else "",
        }
        if self.today and point.pending:
            text = ngettext(
                "%(label)s: %(count)s impression so far today, %(pending)s of them not yet flushed",
                "%(label)s: %(count)s impressions so far today, %(pending)s of them not yet flushed",
                point.total,
            )
        elif self.today:
            text = ngettext(
                "%(label)s: %(count)s impression so far today",
                "%(label)s: %(count)s impressions so far today",
                point.total,
            )
        elif point.pending:
            text = ngettext(
                "%(label)s: %(count)s impression, %(pending)s of them not yet flushed",
                "%(label)s: %(count)s impressions, %(pending)s of them not yet flushed",
                point.total,
            )
        else:
            text = ngettext(
                "%(label)s: %(count)s impression", "%(label)s: %(count)s impressions", point.total
            )
        return text % values


@dataclass(frozen=True)
class Tick:
    y: float  # px
    value: int

    @property
    def text(self):
        return compact(self.value)


@dataclass(frozen=True)
class XLabel:
    x: float  # %
    text: str
    anchor: str  # start, middle or end: the first and last labels stay inside the plot


@dataclass(frozen=True)
class BarChart:
    height: int
    top: float
    bottom: float  # px: the baseline, y of a zero count
    bars: list
    ticks: list
    x_labels: list
    title: str
    summary: str
    total: int  # flushed and pending
    pending: int
    peak: int
    by_month: bool  # each bar is a month

    @property
    def plot_height(self):
        return round(self.bottom - self.top, 3)

    @property
    def has_today(self):
        return any(bar.today for bar in self.bars)


def nice_step(rough):
    """The smallest 1, 2 or 5 x 10**n that is >= `rough` (at least 1: counts are whole)."""
    if rough <= 1:
        return 1
    power = 10 ** math.floor(math.log10(rough))
    for factor in (1, 2, 5, 10):
        if factor * power >= rough:
            return factor * power
    return 10 * power  # pragma: no cover (the loop always returns)


def compact(value):
    """1,234 / 12k / 1.2M (as the locale writes them): an axis label that fits its column."""
    if value < 10_000:
        return number_format(value)
    for limit, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if value >= limit:
            number = value / limit
            rounded = round(number, 1) if number < 10 else round(number)
            if rounded == int(rounded):
                return number_format(int(rounded)) + suffix
            return number_format(rounded, 1) + suffix
    return str(value)  # pragma: no cover (>= 10,000 always has a suffix)


# The names Django's date filter uses ("D", "M"), in the active language: a bar's date through the
# filter itself would cost more than the whole geometry.
def month_name(month):
    return str(MONTHS_3[month]).title()


def day_label(day):
    return f"{month_name(day.month)} {day.day}"


def period_label(point):
    """Wed 2026-11-18 for a day, Nov 2026 for a month."""
    if point.start == point.end:
        return f"{WEEKDAYS_ABBR[point.start.weekday()]} {point.start.isoformat()}"
    return f"{month_name(point.start.month)} {point.start.year}"


def summary_of(points):
    """One sentence that says what the chart shows, for screen readers and the caption."""
    if not points:
        return gettext("No days to show, so no impressions.")
    total = sum(point.total for point in points)
    values = {
        "start": points[0].start.isoformat(),
        "end": points[-1].end.isoformat(),
        "total": number_format(total),
        "busiest": period_label(
            max(points, key=lambda point: (point.total, -point.start.toordinal()))
        ),
        "peak": number_format(max(point.total for point in points)),
        "active": number_format(sum(1 for point in points if point.total)),
        "all": number_format(len(points)),
        "pending": number_format(sum(point.pending for point in points)),
    }
    if total == 0:
        return gettext("No impressions from %(start)s to %(end)s.") % values
    if points[0].start == points[0].end:
        text = ngettext(
            "%(total)s impression from %(start)s to %(end)s; the busiest day was %(busiest)s with"
            " %(peak)s; %(active)s of %(all)s days had impressions",
            "%(total)s impressions from %(start)s to %(end)s; the busiest day was %(busiest)s with"
            " %(peak)s; %(active)s of %(all)s days had impressions",
            total,
        )
    else:
        text = ngettext(
            "%(total)s impression from %(start)s to %(end)s; the busiest month was %(busiest)s"
            " with %(peak)s; %(active)s of %(all)s months had impressions",
            "%(total)s impressions from %(start)s to %(end)s; the busiest month was %(busiest)s"
            " with %(peak)s; %(active)s of %(all)s months had impressions",
            total,
        )
    if any(point.pending for point in points):
        text += gettext("; %(pending)s of them not yet flushed")
    return (text + ".") % values


def bar_chart(points, *, title, today=None, height=HEIGHT):
    """A bar per Point, scaled under a rounded-up maximum with y ticks; `today` marks its bar."""
    peak = max((point.total for point in points), default=0)
    step = nice_step(peak / Y_TICKS)
    top_value = max(step, math.ceil(peak / step) * step)
    baseline = height - BOTTOM
    plot_height = baseline - TOP
    slot = 100 / max(len(points), 1)
    bar_width = slot * BAR_SHARE

    def px(count):
        return plot_height * count / top_value

    bars = []
    for index, point in enumerate(points):
        flushed, pending = px(point.count), px(point.pending)
        bars.append(
            Bar(
                slot_x=_r(index * slot),
                slot_width=_r(slot),
                x=_r(index * slot + (slot - bar_width) / 2),
                width=_r(bar_width),
                y=_r(baseline - flushed),
                height=_r(flushed),
                pending_y=_r(baseline - flushed - pending),
                pending_height=_r(pending),
                point=point,
                today=today is not None and point.start <= today <= point.end,
            )
        )
    ticks = [Tick(_r(baseline - px(value)), value) for value in range(0, top_value + 1, step)]
    return BarChart(
        height=height,
        top=TOP,
        bottom=baseline,
        bars=bars,
        ticks=ticks,
        x_labels=x_labels(points, slot, today),
        title=title,
        summary=summary_of(points),
        total=sum(point.total for point in points),
        pending=sum(point.pending for point in points),
        peak=peak,
        by_month=bool(points) and points[0].start != points[0].end,
    )


def x_labels(points, slot, today):
    """At most MAX_X_LABELS labels, evenly spread; the last bar's is "Today" when it is today's."""
    if not points:
        return []
    every = max(1, math.ceil(len(points) / MAX_X_LABELS))
    chosen = list(range(0, len(points), every))
    last = len(points) - 1
    ends_today = today is not None and points[last].start <= today <= points[last].end
    if ends_today and last not in chosen:
        if chosen and last - chosen[-1] < every / 2 + 1 and len(chosen) > 1:
            chosen.pop()  # too close to the "Today" label
        chosen.append(last)
    labels = []
    for index in chosen:
        point = points[index]
        if index == last and ends_today:
            text = gettext("This month") if point.start != point.end else gettext("Today")
        elif point.start != point.end:
            text = month_name(point.start.month) + (
                f" {point.start.year}" if point.start.month == 1 or index == 0 else ""
            )
        else:
            text = day_label(point.start)
        center = index * slot + slot / 2
        anchor = "start" if center < 8 else "end" if center > 92 else "middle"
        x = index * slot if anchor == "start" else (index + 1) * slot if anchor == "end" else center
        labels.append(XLabel(_r(x), text, anchor))
    return labels


def _r(value):
    return round(value, 3)
