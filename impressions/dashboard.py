"""The admin dashboard's data: date range, charts, top objects, the buffer panel, CSV export."""

import logging
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, timedelta

from django.contrib.admin.templatetags.admin_urls import admin_urlname
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.module_loading import import_string

from redis_endpoints import redact_text

from . import charts, periods, stats
from .conf import conf, counted_model
from .models import Flush
from .recorder import buffer_status, lost

logger = logging.getLogger(__name__)

RANGE_CHOICES = (7, 30, 90)
DEFAULT_DAYS = 30
MAX_RANGE_DAYS = 731  # two years of bars still draw; longer asks are a typo more often than not
TOP_LIMIT = 10
# The dashboard reads whole pending hashes: more patience than a timeline request's 50 ms.
BUFFER_TIMEOUT = 0.5


class BadRange(ValueError):
    """The date range asked for cannot be shown; the message says why, for the page."""


@dataclass(frozen=True)
class DateRange:
    start: date
    end: date
    days: int | None  # 7, 30 or 90 when chosen by length; None for from-to

    @property
    def length(self):
        return (self.end - self.start).days + 1

    def query(self):
        if self.days:
            return f"days={self.days}"
        return f"from={self.start.isoformat()}&to={self.end.isoformat()}"


def parse_range(params, today):
    """The DateRange of a query (`days=7|30|90`, or `from`/`to` as YYYY-MM-DD); BadRange if bad."""
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
        return DateRange(start, end, None)
    text = params.get("days", str(DEFAULT_DAYS)).strip()
    if text not in {str(choice) for choice in RANGE_CHOICES}:
        choices = ", ".join(map(str, RANGE_CHOICES))
        raise BadRange(f"days must be one of {choices}, not {text[:20]!r}.")
    length = int(text)
    return DateRange(today - timedelta(days=length - 1), today, length)


def _parse_day(text, name):
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadRange(f"{name} must be a date as YYYY-MM-DD, not {text[:20]!r}.") from None


def describe_objects(ids, user):
    """{id: (label, admin change URL or None)}; links only for users who may view the objects."""
    model = counted_model()
    found = model._default_manager.in_bulk(list(ids))
    opts = model._meta
    may_view = user.has_perm(f"{opts.app_label}.view_{opts.model_name}") or user.has_perm(
        f"{opts.app_label}.change_{opts.model_name}"
    )
    described = {}
    for object_id in ids:
        obj = found.get(object_id)
        if obj is None:
            described[object_id] = (f"#{object_id} (deleted)", None)
            continue
        url = None
        if may_view:
            with suppress(NoReverseMatch):  # the model may not be in the admin
                url = reverse(admin_urlname(opts, "change"), args=[object_id])
        described[object_id] = (str(obj), url)
    return described


def top_lists(today, date_range, user):
    """The ranked lists of the dashboard, each [(rank, id, count, label, url), …] with a total."""
    with stats.reading():  # one snapshot; today's rows sorted once for the three lists with today
        lists = top_list_rows(today, date_range)
    described = describe_objects({object_id for *_, rows in lists for object_id, _ in rows}, user)
    return [
        {
            "name": name,
            "span": span,
            "rows": [
                (rank, object_id, count, *described[object_id])
                for rank, (object_id, count) in enumerate(rows, start=1)
            ],
        }
        for name, span, rows in lists
    ]


def top_list_rows(today, date_range):
    return [
        ("today", today.isoformat(), stats.top_in(periods.DAY, today, TOP_LIMIT)),
        (
            "this week",
            f"since Monday {periods.week_of(today).isoformat()}",
            stats.top_in(periods.WEEK, today, TOP_LIMIT),
        ),
        (
            "this month",
            f"since {periods.month_of(today).isoformat()}",
            stats.top_in(periods.MONTH, today, TOP_LIMIT),
        ),
        (
            "in the range",
            f"{date_range.start.isoformat()} to {date_range.end.isoformat()}",
            stats.top_posts(date_range.start, date_range.end, TOP_LIMIT),
        ),
    ]


def site_chart(date_range):
    series = stats.filled(
        stats.daily_totals(date_range.start, date_range.end), date_range.start, date_range.end
    )
    title = (
        f"Impressions per day, site-wide, {date_range.start.isoformat()}"
        f" to {date_range.end.isoformat()}"
    )
    return charts.bar_chart(series, title=title)


def object_chart(object_id, today, days=DEFAULT_DAYS):
    start = today - timedelta(days=days - 1)
    counts = stats.history([object_id], start, today)[object_id]
    series = stats.filled(counts, start, today)
    return charts.bar_chart(series, title=f"Impressions per day of #{object_id}, last {days} days")


def extra_panels(request):
    """The panels IMPRESSIONS_DASHBOARD_PANELS adds: a site shows what this app cannot import.

    Each entry is the dotted path of a callable(request) returning {"title", "rows": [(label,
    value)], optional "links": [(text, url)]}; one that fails is shown as unavailable, never a 500.
    """
    panels = []
    for path in conf.DASHBOARD_PANELS:
        try:
            panel = dict(import_string(path)(request))
        except Exception as error:
            logger.warning("dashboard: panel %s failed", path, exc_info=True)
            panel = {"title": path, "error": f"{type(error).__name__}: {redact_text(str(error))}"}
        panels.append(panel)
    return panels


def buffer_panel():
    """The Redis buffer and the last flush; `available` is False when Redis did not answer."""
    panel = {"available": False, "lost_here": lost.unreported, **last_flushes()}
    try:
        status = buffer_status(BUFFER_TIMEOUT)
    except Exception as error:
        logger.info("dashboard: the impression buffer did not answer (%s)", type(error).__name__)
        panel["error"] = type(error).__name__
        return panel
    panel.update(
        available=True,
        pending=status.pending_impressions,
        in_snapshots=status.in_snapshots,
        lost_reported=status.reported_lost,
        scheduled=status.flush_scheduled,
    )
    return panel


def last_flushes():
    """The newest ledger row and, if that one applied nothing, the newest one that did."""
    last = Flush.objects.order_by("-started_at").first()
    last_applied = last
    if last is not None and last.outcome != Flush.Outcome.APPLIED:
        last_applied = (
            Flush.objects.filter(outcome=Flush.Outcome.APPLIED).order_by("-started_at").first()
        )
    now = timezone.now()
    return {
        "last_flush": _flush_facts(last, now),
        "last_applied_flush": None if last_applied is last else _flush_facts(last_applied, now),
    }


def _flush_facts(flush, now):
    if flush is None:
        return None
    ended = flush.finished_at or flush.started_at
    duration = None if flush.finished_at is None else flush.finished_at - flush.started_at
    return {
        "flush": flush,
        "duration_ms": None if duration is None else round(duration.total_seconds() * 1000),
        "lag": duration_text(now - ended),
    }


def duration_text(delta):
    """A short human duration: 42 s, 17 min, 5 h 3 min, 2 days 4 h."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h {minutes % 60} min"
    return f"{hours // 24} days {hours % 24} h"
