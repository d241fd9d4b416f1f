"""The admin dashboard's data: date range, charts, top objects, the buffer panel, CSV export."""

import csv
import io
from datetime import timedelta

from django.contrib.admin.templatetags.admin_urls import admin_urlname
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.module_loading import import_string
from django.utils.translation import gettext, gettext_lazy, ngettext

from redis_endpoints import redact_text, redacting_logger

from . import charts, keys, ledger, periods, ranking, rollup, stats
from .conf import conf, counted_model, counted_rows
from .live import pending_by_object, range_total, with_pending
from .models import Flush
from .ranges import QUICK_RANGES, BadRange, DateRange, parse_range
from .recorder import lost
from .schedule import flush_due

__all__ = ["BadRange", "DateRange", "parse_range"]  # the dashboard's range, from ranges.py

logger = redacting_logger(__name__)

DEFAULT_DAYS = 30  # of a single object's chart
TOP_LIMIT = 10
CSV_BATCH = 2000  # objects named per query in the CSV of every object
# The history's object_id is a bigint; an IntegerField key may be negative.
MIN_OBJECT_ID, MAX_OBJECT_ID = -(2**63), 2**63 - 1
# A spreadsheet opening the CSV runs a cell that starts with one of these as a formula (CSV
# injection, =HYPERLINK(…) or worse): an object's name is whatever its author wrote.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def object_id(text):
    """The object id `text` names (a whole number from MIN_OBJECT_ID to MAX_OBJECT_ID: an
    IntegerField key may be negative), or None."""
    text = text.strip()
    digits = text.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > len(str(MAX_OBJECT_ID)):
        return None
    number = int(text)
    return number if MIN_OBJECT_ID <= number <= MAX_OBJECT_ID else None


def known_object(object_id, start, end):
    """Whether the counted model has this object, or the history impressions of it (a deleted
    object's) in start..end."""
    if counted_rows().filter(pk=object_id).exists():
        return True
    return bool(stats.history([object_id], start, end)[object_id])


def objects_of(ids):
    """{id: object} of the counted model's objects of `ids` that exist: through its default
    manager (its select_related and the like, which its __str__ may need), then the rest past
    it (counted_rows): an object it hides (a draft) is no deleted object."""
    ids = list(ids)
    found = counted_model()._default_manager.in_bulk(ids)
    if hidden := [object_id for object_id in ids if object_id not in found]:
        found.update(counted_rows().in_bulk(hidden))
    return found


def admin_url(name, current_app, args=()):
    """The URL `name` ("admin:…") on the admin site named `current_app` (None: the default one),
    or None where that site has no such page (it does not register the model)."""
    try:
        return reverse(name, args=args, current_app=current_app)
    except NoReverseMatch:
        return None


def describe_objects(ids, may_view, current_app=None):
    """{id: (label, change URL on the admin site `current_app` or None)}: the object's str() and
    its page for users who may view the counted model (`may_view`); for the others its id alone,
    no name (its str() is the object's data: a post's words) and no link."""
    found = objects_of(ids)
    change_page = admin_urlname(counted_model()._meta, "change")
    described = {}
    for object_id in ids:
        obj = found.get(object_id)
        if obj is None:
            described[object_id] = (gettext("#%(id)s (deleted)") % {"id": object_id}, None)
        elif may_view:
            url = admin_url(change_page, current_app, [object_id])
            described[object_id] = (str(obj), url)
        else:
            described[object_id] = (f"#{object_id}", None)
    return described


def top_lists(today, date_range, may_view, buffer, current_app=None):
    """The ranked lists of the dashboard, each with rows (rank, id, count, pending, label, url)
    (describe_objects: names and links if `may_view` the counted model).

    A list that holds today adds each shown object's impressions not yet flushed, when the
    buffer answered, and is ranked by that live count; `live`: some row has such impressions.
    `empty`: what the list says when it has no row.
    """
    with stats.reading():  # one snapshot; today's rows sorted once for the three lists with today
        lists = top_list_rows(today, date_range)
    ids = {object_id for *_, rows in lists for object_id, _ in rows}
    pending = pending_by_object(ids) if buffer.status is not None else {}
    described = describe_objects(ids, may_view, current_app)
    result = []
    for key, span, rows in lists:
        holds_today = key != "in the range" or date_range.end == today
        ranked = with_pending(rows, pending if holds_today else {})
        result.append(
            {
                "key": key,  # the list's id on the page, in any language
                "name": TOP_LIST_NAMES[key],
                "span": span,
                "live": any(waiting for _, _, waiting in ranked),
                "empty": empty_top_text(holds_today, buffer.pending),
                "rows": [
                    (rank, object_id, count, waiting, *described[object_id])
                    for rank, (object_id, count, waiting) in enumerate(ranked, start=1)
                ],
            }
        )
    return result


def empty_top_text(holds_today, pending):
    """What a top list without rows says: its objects come from the history, so impressions still
    pending show in it only once flushed."""
    if not holds_today:
        return gettext("No impressions in the range.")
    if not pending:
        return gettext("No impressions yet.")
    return ngettext(
        "No flushed impressions yet: the %(count)s pending impression reaches this list with the"
        " next flush.",
        "No flushed impressions yet: the %(count)s pending ones reach this list with the next"
        " flush.",
        pending,
    ) % {"count": number_format(pending)}


# The top lists, by the key their id on the page is made of.
TOP_LIST_NAMES = {
    "today": gettext_lazy("today"),
    "this week": gettext_lazy("this week"),
    "this month": gettext_lazy("this month"),
    "in the range": gettext_lazy("in the range"),
}


def top_list_rows(today, date_range):
    return [
        ("today", today.isoformat(), stats.top_in(periods.DAY, today, TOP_LIMIT)),
        (
            "this week",
            gettext("since Monday %(day)s") % {"day": periods.week_of(today).isoformat()},
            stats.top_in(periods.WEEK, today, TOP_LIMIT),
        ),
        (
            "this month",
            gettext("since %(day)s") % {"day": periods.month_of(today).isoformat()},
            stats.top_in(periods.MONTH, today, TOP_LIMIT),
        ),
        (
            "in the range",
            date_range.span_text(),
            stats.top_posts(date_range.start, date_range.end, TOP_LIMIT),
        ),
    ]


def site_chart(date_range, today, buffer):
    """Impressions per day (per month for long ranges) site-wide; today's bar adds the pending."""
    counts = stats.daily_totals(date_range.start, date_range.end)
    pending = buffer.pending if date_range.start <= today <= date_range.end else 0
    points = chart_points(counts, date_range, today, pending)
    if date_range.by_month:
        title = gettext("Impressions per month, site-wide, %(span)s")
    else:
        title = gettext("Impressions per day, site-wide, %(span)s")
    title %= {"span": date_range.span_text()}
    return charts.bar_chart(points, title=title, today=today)


def chart_points(counts, date_range, today, pending):
    """charts.Point per day of the range, or per month when it is long; `pending` on today's."""
    points = []
    for day in periods.days(date_range.start, date_range.end):
        extra = pending if day == today else 0
        if date_range.by_month and points and points[-1].start.month == day.month:
            last = points[-1]
            points[-1] = charts.Point(
                last.start, day, last.count + counts.get(day, 0), last.pending + extra
            )
        else:
            points.append(charts.Point(day, day, counts.get(day, 0), extra))
    return points


def site_total(chart, date_range, today, buffer):
    """The range's total (pending included when it holds today) against the period before."""
    previous = date_range.previous()
    before = sum(stats.daily_totals(previous.start, previous.end).values())
    return range_total(chart.total - chart.pending, before, date_range, today, buffer)


def object_chart(object_id, today, days=DEFAULT_DAYS, pending=0):
    """One object's impressions per day, the last `days` days; `pending` on today's bar."""
    date_range = DateRange(today - timedelta(days=days - 1), today)
    counts = stats.history([object_id], date_range.start, today)[object_id]
    points = chart_points(counts, date_range, today, pending)
    title = ngettext(
        "Impressions per day of #%(id)s, last %(days)s day",
        "Impressions per day of #%(id)s, last %(days)s days",
        days,
    ) % {"id": object_id, "days": number_format(days)}
    return charts.bar_chart(points, title=title, today=today)


def range_input(params, date_range, error):
    """What the from/to inputs show: what was typed when it was refused, else the range's days."""
    if error and (params.get("from") or params.get("to")):
        return {"from": params.get("from", "")[:20], "to": params.get("to", "")[:20]}
    return {"from": date_range.start.isoformat(), "to": date_range.end.isoformat()}


def quick_ranges(date_range):
    """[(key, label, selected)] of the quick range links."""
    return [(key, label, key == date_range.key) for key, label in QUICK_RANGES.items()]


def delay_texts():
    """The flush delay and the de-duplication window in words, for the page's explanations."""
    return {
        "flush_delay_text": duration_text(timedelta(seconds=conf.FLUSH_DELAY)),
        "dedup_text": duration_text(timedelta(seconds=conf.DEDUP_WINDOW)),
    }


def page_number(text):
    """The page `text` asks for, a whole number from 1 (a huge one past any last page), or None."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or not text.strip("0"):
        return None
    return int(text) if len(text) <= 18 else 10**18  # no database counts that many pages


def ranked_objects(date_range, today, page, may_view, current_app=None):
    """A page of every object ranked by impressions in the range, with each one's not yet flushed
    count when the range holds today (shown beside the rank, which the history decides); names
    and links if `may_view` the counted model (describe_objects).

    A page past the last shows the last (`past_end`: the page asked for). The page and the count
    are one statement (ranking.ranked_page); a page past the end costs two more."""
    start, end = date_range.start, date_range.end
    rows, has_next, object_count = ranking.ranked_page(start, end, page)
    if not object_count:  # no row to carry the count (past the end, or no object), no day kept
        object_count = ranking.ranked_count(start, end)
    last_page = max(1, -(-object_count // ranking.PAGE_SIZE))
    past_end = None
    if page > last_page:  # only where the page had no row
        past_end, page = page, last_page
        rows, has_next, _ = ranking.ranked_page(start, end, page)
    ids = [object_id for _, object_id, _ in rows]
    live = date_range.end == today
    pending = pending_by_object(ids) if live else {}
    described = describe_objects(ids, may_view, current_app)
    return {
        "rows": [
            (rank, object_id, count, pending.get(object_id, 0), *described[object_id])
            for rank, object_id, count in rows
        ],
        "live": live,
        "page": page,
        "last_page": last_page,
        "past_end": past_end,
        "has_previous": page > 1,
        "has_next": has_next,
        "object_count": object_count,
        "page_size": ranking.PAGE_SIZE,
    }


def ranked_csv_lines(date_range, names=True):
    """CSV lines `rank,object_id,object,impressions` of every object, streamed; `object` empty
    unless `names` (users who may not view the counted model get ids and counts)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["rank", "object_id", "object", "impressions"])
    batch = []
    for row in ranking.iter_ranked(date_range.start, date_range.end):
        batch.append(row)
        if len(batch) == CSV_BATCH:
            yield from _csv_rows(writer, out, batch, names)
            batch = []
    yield from _csv_rows(writer, out, batch, names)


def _csv_rows(writer, out, batch, names):
    """Write `batch`, with its objects' names if `names` (one query per batch); yield the text so
    far."""
    found = objects_of([object_id for _, object_id, _ in batch]) if names else {}
    for rank, object_id, count in batch:
        obj = found.get(object_id)
        writer.writerow([rank, object_id, "" if obj is None else as_text(str(obj)), count])
    yield out.getvalue()
    out.seek(0)
    out.truncate()


def as_text(cell):
    """`cell` as a spreadsheet shows it and never runs it: a leading formula character escaped
    with an apostrophe, as OWASP recommends."""
    return f"'{cell}" if cell.startswith(FORMULA_STARTS) else cell


def object_history(obj, today, days=DEFAULT_DAYS, current_app=None):
    """The change page's impressions of `obj`: its chart, and its counts beside it; links into
    the admin site `current_app` where it has the dashboard."""
    pending = pending_by_object([obj.pk]).get(obj.pk)
    csv_url = admin_url("admin:impressions_dashboard_csv", current_app)
    chart = object_chart(obj.pk, today, days, pending or 0)
    return {
        "impressions_chart": chart,
        "impressions_chart_id": f"object-{obj.pk}",
        "impressions_flushed": getattr(obj, conf.COUNT_FIELD) or 0,  # a nullable field: NULL
        "impressions_pending": pending,  # None: Redis did not answer
        "impressions_days": days,
        "impressions_csv_url": csv_url and f"{csv_url}?post={obj.pk}&days={days}",
        "impressions_dashboard_url": admin_url(
            "admin:impressions_dashboard_changelist", current_app
        ),
    }


def extra_panels(request):
    """The panels IMPRESSIONS_DASHBOARD_PANELS adds: a site shows what this app cannot import.

    Each entry is the dotted path of a callable(request) returning {"title", "rows": [(label,
    value)], optional "links": [(text, url)]}, or None: no panel for this request (a user who may
    not see its numbers: the dashboard's view permission shows the dashboard, not every panel);
    one that fails is shown as unavailable, never a 500.
    """
    panels = []
    for path in conf.DASHBOARD_PANELS:
        try:
            panel = import_string(path)(request)
            if panel is None:
                continue
            panel = dict(panel)
        except Exception as error:
            logger.warning("dashboard: panel %s failed", path, exc_info=True)
            panel = {"title": path, "error": f"{type(error).__name__}: {redact_text(str(error))}"}
        panels.append(panel)
    return panels


def buffer_panel(buffer, current_app=None, ledger_links=True):
    """The Redis buffer, the next flush and the last ones (linked on the admin site `current_app`
    if `ledger_links`: the user may view the ledger there); `available`: Redis answered."""
    panel = {
        "available": False,
        "lost_here": lost.unreported,
        "rollup": rollup.status(),
        **last_flushes(current_app, ledger_links),
    }
    if buffer.status is None:
        panel["error"] = buffer.error
        return panel
    status = buffer.status
    panel.update(
        available=True,
        pending=status.pending_impressions,
        in_snapshots=status.in_snapshots,
        lost_reported=status.reported_lost,
        set_aside=status.set_aside,
        set_aside_key=keys.set_aside_key("N"),
        scheduled=status.flush_scheduled,
        next_flush=next_flush(
            status.flush_scheduled, status.pending_impressions, status.in_snapshots
        ),
    )
    return panel


def next_flush(scheduled, pending=0, in_snapshots=0):
    """When the next flush runs, as the page says it: {"at", "text", "overdue", "stalled",
    "snapshots"}, or None when none is scheduled and none is needed.

    `stalled`: impressions are pending and no flush is scheduled. Their flush was scheduled, but
    the schedule guard lapsed (IMPRESSIONS_FLUSH_DELAY + 60 s after it was taken) before the flush
    ran: no worker took it, or its message was lost. (Impressions taken by a running flush are in
    its snapshots, not pending.)

    `snapshots`: nothing is pending and no flush is scheduled, yet `in_snapshots` impressions
    wait in the snapshots of a flush that did not finish (it failed, or it is running now): only
    a next flush applies them, and none comes until an impression schedules one."""
    if not scheduled:
        if pending:
            text = ngettext(
                "none scheduled, yet %(count)s impression is pending",
                "none scheduled, yet %(count)s impressions are pending",
                pending,
            ) % {"count": number_format(pending)}
            return flush_text(None, text, overdue=True, stalled=True)
        if in_snapshots:
            text = ngettext(
                "none scheduled, yet %(count)s impression waits in the snapshots of a flush that"
                " did not finish",
                "none scheduled, yet %(count)s impressions wait in the snapshots of a flush that"
                " did not finish",
                in_snapshots,
            ) % {"count": number_format(in_snapshots)}
            return flush_text(None, text, overdue=True, stalled=True, snapshots=True)
        return None
    try:
        due = flush_due()
    except Exception:
        due = None
    if due is None:
        return flush_text(None, gettext("scheduled"))
    now = timezone.now()
    zone = timezone.get_default_timezone()
    if timezone.is_naive(now):  # USE_TZ = False: naive datetimes are TIME_ZONE's wall clock
        at = timezone.make_naive(due, zone)
        now = periods.utc(now)  # compared in UTC, not by wall clocks
    else:
        at = timezone.localtime(due)
    if due < now - timedelta(seconds=30):
        text = gettext("overdue by %(duration)s") % {"duration": duration_text(now - due)}
        return flush_text(at, text, overdue=True)
    text = gettext("in %(duration)s") % {"duration": duration_text(max(due - now, timedelta(0)))}
    return flush_text(at, text)


def flush_text(at, text, overdue=False, stalled=False, snapshots=False):
    return {"at": at, "text": text, "overdue": overdue, "stalled": stalled, "snapshots": snapshots}


def last_flushes(current_app=None, links=True):
    """The newest ledger row and, if that one applied nothing, the newest one that did; each
    linking to its ledger page if `links`."""
    last = Flush.objects.order_by("-started_at").first()
    last_applied = last
    if last is not None and last.outcome != Flush.Outcome.APPLIED:
        last_applied = (
            Flush.objects.filter(outcome=Flush.Outcome.APPLIED).order_by("-started_at").first()
        )
    now = timezone.now()
    return {
        "last_flush": _flush_facts(last, now, current_app, links),
        "last_applied_flush": (
            None if last_applied is last else _flush_facts(last_applied, now, current_app, links)
        ),
    }


def _flush_facts(flush, now, current_app, links):
    if flush is None:
        return None
    # In UTC (periods.utc): under USE_TZ = False, naive wall clocks across a DST change.
    ended = ledger.finished_utc(flush) or ledger.started_utc(flush)
    duration = ledger.run_time(flush)
    return {
        "flush": flush,
        "duration": None if duration is None else run_time_text(duration),
        "lag": duration_text(periods.utc(now) - ended),
        "url": admin_url("admin:impressions_flush_change", current_app, [flush.pk])
        if links
        else None,
    }


def impressions_text(number):
    """1 impression, 1,234 impressions (as the locale writes the number)."""
    return ngettext("%(count)s impression", "%(count)s impressions", number) % {
        "count": number_format(number)
    }


def run_time_text(delta):
    """412 ms, 3.2 s, 2 min 5 s: how long a flush ran."""
    ms = delta.total_seconds() * 1000
    if ms < 1000:
        return gettext("%(ms)s ms") % {"ms": round(ms)}
    if ms < 60_000:
        return gettext("%(seconds)s s") % {"seconds": number_format(ms / 1000, 1)}
    seconds = round(ms / 1000)
    return gettext("%(minutes)s min %(seconds)s s") % {
        "minutes": number_format(seconds // 60),
        "seconds": seconds % 60,
    }


def duration_text(delta):
    """A short human duration: 42 s, 17 min, 5 h 3 min, 2 days 4 h."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return gettext("%(seconds)s s") % {"seconds": seconds}
    minutes = seconds // 60
    if minutes < 120:
        return gettext("%(minutes)s min") % {"minutes": minutes}
    hours = minutes // 60
    if hours < 48:
        return gettext("%(hours)s h %(minutes)s min") % {"hours": hours, "minutes": minutes % 60}
    days = hours // 24
    return ngettext("%(days)s day %(hours)s h", "%(days)s days %(hours)s h", days) % {
        "days": number_format(days),
        "hours": hours % 24,
    }
