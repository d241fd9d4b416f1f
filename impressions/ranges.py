"""The dashboard's date ranges: quick ranges as Plausible names them, or from-to; and the period
before a range, which its change is measured against."""

from dataclasses import dataclass
from datetime import date, timedelta

from django.utils.translation import gettext, gettext_lazy

from . import periods

# ?range=… : what each quick range is called on the page.
QUICK_RANGES = {
    "today": gettext_lazy("Today"),
    "yesterday": gettext_lazy("Yesterday"),
    "7d": gettext_lazy("7 days"),
    "30d": gettext_lazy("30 days"),
    "90d": gettext_lazy("90 days"),
    "12mo": gettext_lazy("12 months"),
}
# A quick range in a sentence: as a name ("Top posts, the last 7 days"), and after a verb ("12
# impressions in the last 7 days"); whole phrases, so that a language words each its own way.
QUICK_RANGE_LABELS = {
    "today": gettext_lazy("today"),
    "yesterday": gettext_lazy("yesterday"),
    "7d": gettext_lazy("the last 7 days"),
    "30d": gettext_lazy("the last 30 days"),
    "90d": gettext_lazy("the last 90 days"),
    "12mo": gettext_lazy("the last 12 months"),
}
QUICK_RANGE_DURING = {
    "today": gettext_lazy("today"),
    "yesterday": gettext_lazy("yesterday"),
    "7d": gettext_lazy("in the last 7 days"),
    "30d": gettext_lazy("in the last 30 days"),
    "90d": gettext_lazy("in the last 90 days"),
    "12mo": gettext_lazy("in the last 12 months"),
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
        if self.key:
            return str(QUICK_RANGE_LABELS[self.key])
        return self.span_text()

    def span_text(self):
        """2026-01-01 to 2026-01-31, or 2026-01-01: its days."""
        if self.start == self.end:
            return self.start.isoformat()
        return gettext("%(start)s to %(end)s") % {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
        }

    @property
    def during(self):
        """in the last 30 days / today / on 2026-01-01 / from 2026-01-01 to 2026-01-31: the range
        after a verb ("12 impressions today", "no impressions on 2026-01-01")."""
        if self.key:
            return str(QUICK_RANGE_DURING[self.key])
        if self.start == self.end:
            return gettext("on %(day)s") % {"day": self.start.isoformat()}
        return gettext("from %(start)s to %(end)s") % {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
        }

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
            raise BadRange(
                gettext("The start %(start)s is after the end %(end)s.")
                % {"start": start, "end": end}
            )
        if end > today:
            raise BadRange(
                gettext("The end %(end)s is in the future (today is %(today)s).")
                % {"end": end, "today": today}
            )
        if (end - start).days + 1 > MAX_RANGE_DAYS:
            raise BadRange(
                gettext("A range can be at most %(days)s days long.") % {"days": MAX_RANGE_DAYS}
            )
        if start.toordinal() - date.min.toordinal() < (end - start).days + 1:
            # Its change is measured against the period before, which must be a period of dates.
            raise BadRange(
                gettext(
                    "The start %(start)s is too early: the period before it, which the change is"
                    " measured against, would begin before %(first)s."
                )
                % {"start": start, "first": date.min}
            )
        return DateRange(start, end)
    if "days" in params and "range" not in params:
        text = params["days"].strip()
        if text not in LEGACY_DAYS:
            raise BadRange(
                gettext("days must be one of %(choices)s, not %(given)r.")
                % {"choices": ", ".join(LEGACY_DAYS), "given": text[:20]}
            )
        return quick_range(LEGACY_DAYS[text], today)
    key = params.get("range", DEFAULT_RANGE).strip()
    if key not in QUICK_RANGES:
        raise BadRange(
            gettext("range must be one of %(choices)s, not %(given)r.")
            % {"choices": ", ".join(QUICK_RANGES), "given": key[:20]}
        )
    return quick_range(key, today)


def _parse_day(text, name):
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadRange(
            gettext("%(name)s must be a date as YYYY-MM-DD, not %(given)r.")
            % {"name": name, "given": text[:20]}
        ) from None
