"""The dashboard's date ranges: quick ranges as Plausible names them, or from-to; and the period
before a range, which its change is measured against."""

from dataclasses import dataclass
from datetime import date, timedelta

from . import periods

# ?range=… : what each quick range is called on the page.
QUICK_RANGES = {
    "today": "Today",
    "yesterday": "Yesterday",
    "7d": "7 days",
    "30d": "30 days",
    "90d": "90 days",
    "12mo": "12 months",
}
DEFAULT_RANGE = "30d"
LEGACY_DAYS = {"7": "7d", "30": "30d", "90": "90d"}  # ?days=N links from before quick ranges
MAX_RANGE_DAYS = 731  # two years of bars still draw; longer asks are a typo more often than not
# Longer ranges draw a bar per month (as Plausible does for 12 months): a day would be a sliver.
MAX_DAILY_BARS = 92


class BadRange(ValueError):
    """The date range asked for cannot be shown; the message says why, for the page."""


@dataclass(frozen=True)
class DateRange:
    start: date
    end: date
    key: str | None = None  # a QUICK_RANGES key, or None for from-to

    @property
    def length(self):
        return (self.end - self.start).days + 1

    @property
    def by_month(self):
        return self.length > MAX_DAILY_BARS

    def query(self):
        if self.key:
            return f"range={self.key}"
        return f"from={self.start.isoformat()}&to={self.end.isoformat()}"

    @property
    def label(self):
        """the last 30 days / today / 2026-01-01 to 2026-01-31, for sentences on the page."""
        if self.key in ("today", "yesterday"):
            return self.key
        if self.key:
            return f"the last {QUICK_RANGES[self.key]}"
        if self.start == self.end:
            return self.start.isoformat()
        return f"{self.start.isoformat()} to {self.end.isoformat()}"

    @property
    def during(self):
        """in the last 30 days / today / on 2026-01-01 / from 2026-01-01 to 2026-01-31: the range
        after a verb ("12 impressions today", "no impressions on 2026-01-01")."""
        if self.key in ("today", "yesterday"):
            return self.key
        if self.key:
            return f"in {self.label}"
        if self.start == self.end:
            return f"on {self.start.isoformat()}"
        return f"from {self.label}"

    def previous(self):
        """The period of the same length just before: what the change is measured against.

        As many days, ending the day before the range, for 12 months too: that range ends today,
        part way through its last month, and the twelve whole months before it would be longer,
        making a steady site look like it shrank."""
        return DateRange(self.start - timedelta(days=self.length), self.start - timedelta(days=1))


def quick_range(key, today):
    if key == "today":
        return DateRange(today, today, key)
    if key == "yesterday":
        yesterday = today - timedelta(days=1)
        return DateRange(yesterday, yesterday, key)
    if key == "12mo":  # this month and the eleven before it
        return DateRange(months_before(periods.month_of(today), 11), today, key)
    days = int(key.removesuffix("d"))
    return DateRange(today - timedelta(days=days - 1), today, key)


def months_before(first, count):
    """The 1st of the month `count` months before the month of `first`."""
    index = first.year * 12 + first.month - 1 - count
    return date(index // 12, index % 12 + 1, 1)


def parse_range(params, today):
    """The DateRange of a query: `range=<quick range>`, or `from`/`to` as YYYY-MM-DD (either may be
    left out), or the older `days=7|30|90`; BadRange with a message for the page if bad."""
    start_text, end_text = params.get("from", "").strip(), params.get("to", "").strip()
    if start_text or end_text:
        start = _parse_day(start_text or end_text, "from")
        end = _parse_day(end_text or today.isoformat(), "to")
        if start > end:
            raise BadRange(f"The start {start} is after the end {end}.")
        if end > today:
            raise BadRange(f"The end {end} is in the future (today is {today}).")
        if (end - start).days + 1 > MAX_RANGE_DAYS:
            raise BadRange(f"A range can be at most {MAX_RANGE_DAYS} days long.")
        if start.toordinal() - date.min.toordinal() < (end - start).days + 1:
            # Its change is measured against the period before, which must be a period of dates.
            raise BadRange(
                f"The start {start} is too early: the period before it, which the change is"
                f" measured against, would begin before {date.min}."
            )
        return DateRange(start, end)
    if "days" in params and "range" not in params:
        text = params["days"].strip()
        if text not in LEGACY_DAYS:
            raise BadRange(f"days must be one of {', '.join(LEGACY_DAYS)}, not {text[:20]!r}.")
        return quick_range(LEGACY_DAYS[text], today)
    key = params.get("range", DEFAULT_RANGE).strip()
    if key not in QUICK_RANGES:
        raise BadRange(f"range must be one of {', '.join(QUICK_RANGES)}, not {key[:20]!r}.")
    return quick_range(key, today)


def _parse_day(text, name):
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadRange(f"{name} must be a date as YYYY-MM-DD, not {text[:20]!r}.") from None
