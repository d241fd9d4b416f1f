"""Calendar periods of the history: the day of an impression, ISO weeks, months, range covers."""

from datetime import UTC, date, timedelta
from typing import NamedTuple

from django.utils import timezone

DAY = "d"
WEEK = "w"
MONTH = "m"
# A day not rolled up yet (impressions/stats.py): its open rows, and, while the roll-up moves it,
# its rows moved already.
OPEN_DAY = "o"
# The same day's open rows only: the rest of a week or month whose rollup row holds the others.
OPEN_REST = "r"


class Piece(NamedTuple):
    """A run of days read from one place: a day's rows (rolled up or open), a week or a month rollup."""

    period: str  # DAY, OPEN_DAY, OPEN_REST, WEEK or MONTH
    start: date  # the day, the week's Monday, the month's 1st

    @property
    def end(self):
        """The last day of the piece (inclusive)."""
        if self.period == WEEK:
            return self.start + timedelta(days=6)
        if self.period == MONTH:
            return next_month(self.start) - timedelta(days=1)
        return self.start


def utc(moment):
    """`moment` in UTC: aware, or naive as TIME_ZONE's wall clock (USE_TZ = False; its fold
    says which pass of a repeated hour). Naive wall clocks compare and subtract as clocks: across
    a daylight-saving change, 5 minutes read as 65, or as 55 minutes ago."""
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_default_timezone())
    return moment.astimezone(UTC)


def day_of(moment):
    """The date of a datetime in the site's TIME_ZONE: the day its impressions count on.

    TIME_ZONE, not the current time zone: a request may activate its user's zone, and the history
    must not depend on who was looking. A naive datetime (`timezone.now()` under USE_TZ = False)
    is already TIME_ZONE's wall-clock time: Django sets the process's zone to TIME_ZONE.
    """
    if timezone.is_naive(moment):
        return moment.date()
    return timezone.localdate(moment, timezone.get_default_timezone())


def week_of(day):
    """The Monday that starts the ISO week of `day`: the key of its week rollup row."""
    return day - timedelta(days=day.weekday())


def month_of(day):
    """The 1st of the month of `day`: the key of its month rollup row."""
    return day.replace(day=1)


def next_month(first):
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def days(start, end):
    """Every day from `start` to `end`, both included."""
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def cover(start, end):
    """Cut [start, end] (inclusive) into few pieces: whole months, whole weeks, single days.

    Months are used where the range holds them whole; the days before the first whole month and
    after the last one are covered by whole ISO weeks where they hold them, and single days.
    """
    if start > end:
        return []
    first_month = month_of(start) if start.day == 1 else next_month(month_of(start))
    months = []
    month = first_month
    while next_month(month) - timedelta(days=1) <= end:
        months.append(Piece(MONTH, month))
        month = next_month(month)
    if not months:
        return _weeks_and_days(start, end)
    head = _weeks_and_days(start, months[0].start - timedelta(days=1))
    tail = _weeks_and_days(months[-1].end + timedelta(days=1), end)
    return head + months + tail


def _weeks_and_days(start, end):
    pieces = []
    day = start
    while day <= end:
        if day.weekday() == 0 and day + timedelta(days=6) <= end:
            pieces.append(Piece(WEEK, day))
            day += timedelta(days=7)
        else:
            pieces.append(Piece(DAY, day))
            day += timedelta(days=1)
    return pieces
