"""Admin: the flush ledger, "flush now", live pending counts, the dashboard and post charts.

Every URL is reversed on the admin site serving the page (`current_app=self.admin_site.name`, as
Django's own admin does), so each piece works on any number of sites that register it.
"""

import io
from datetime import datetime
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.exceptions import NotRegistered
from django.contrib.admin.templatetags.admin_urls import admin_urlname
from django.contrib.admin.utils import label_for_field
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import (
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
    HttpResponseNotFound,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import formats, timezone
from django.utils.functional import lazy
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.text import capfirst
from django.utils.translation import gettext, gettext_lazy, ngettext, pgettext_lazy

from redis_endpoints import redact_text

from . import dashboard, flush_now, ledger, periods, stats
from .conf import (
    conf,
    counted_id,
    counted_model,
    counted_names,
    counted_objects,
    counted_plural,
    counts_into,
)
from .live import read_buffer
from .models import Dashboard, Flush
from .recorder import lost, pending_status

# "Flush now" (and its waiting page): the ledger's change permission ("Can change flush").
FLUSH_NOW_PERMISSION = "impressions.change_flush"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Derived data: viewed here, never added, edited or deleted."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def counted_label(text):
    """`text` (lazy, translated when shown) with %(objects)s the counted model's
    verbose_name_plural, read when shown."""
    return lazy(lambda: str(text) % {"objects": counted_plural()}, str)()


@admin.register(Flush)
class FlushAdmin(ReadOnlyAdmin):
    # The ledger is derived data and the exactly-once gate: nobody edits or deletes it here.
    # The columns an operator reads first, narrow enough for 1280 px; the rest is on each row's page.
    list_display = [
        "started",
        "outcome",
        "impressions_applied",
        "updated",
        "duration",
        "dropped",
        "recovered_by",
        "id",
    ]
    list_display_links = ["started"]
    list_filter = ["outcome"]
    search_fields = ["id", "recovered_by"]
    date_hierarchy = "started_at"

    def get_object(self, request, object_id, from_field=None):
        # A flush id is text, in which PostgreSQL refuses a NUL (DataError, a 500): no flush has one.
        if "\x00" in str(object_id):
            return None
        return super().get_object(request, object_id, from_field)

    @admin.display(description=pgettext_lazy("flush", "started"), ordering="started_at")
    def started(self, flush):
        return exact_time(flush.started_at)

    @admin.display(description=gettext_lazy("duration"))
    def duration(self, flush):
        if flush.finished_at is None:
            return gettext("not finished")
        return dashboard.run_time_text(ledger.run_time(flush))

    @admin.display(
        description=counted_label(gettext_lazy("%(objects)s updated")), ordering="posts_updated"
    )
    def updated(self, flush):
        # Not named posts_updated: a model field's verbose_name would win over the description.
        return flush.posts_updated

    @admin.display(description=counted_label(gettext_lazy("dropped (deleted %(objects)s)")))
    def dropped(self, flush):
        if not flush.impressions_dropped:
            return "-"
        return gettext("%(impressions)s of %(count)s %(objects)s") % {
            "impressions": formats.number_format(flush.impressions_dropped),
            "count": formats.number_format(flush.posts_dropped),
            "objects": counted_plural(),
        }

    def get_urls(self):
        # Not in ATOMIC_REQUESTS' transaction: a backend that runs the flush here (Immediate)
        # takes the counts out of Redis, and a rollback of the request would then lose them.
        flush_now = transaction.non_atomic_requests(self.admin_site.admin_view(self.flush_now_view))
        waiting = self.admin_site.admin_view(self.flush_wait_view)
        return [
            path("flush-now/", flush_now, name="impressions_flush_now"),
            path("flush-now/<str:result_id>/", waiting, name="impressions_flush_wait"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), **flush_now_context(request, self.admin_site)}
        return super().changelist_view(request, extra_context)

    def has_flush_now_permission(self, request):
        """Whether this user may press "Flush now", which writes (it applies the buffered
        counts): the ledger's change permission, which gives nothing else here (the ledger
        stays read-only) but its view."""
        return request.user.has_perm(FLUSH_NOW_PERMISSION)

    def flush_now_view(self, request):
        """POST: enqueue a flush now; back to `next` once it has run, saying what it did."""
        if not self.has_flush_now_permission(request):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        site = self.admin_site.name
        target = safe_next(request, request.POST.get("next", ""), site)
        since = timezone.now()
        try:
            result = flush_now.start()
        except Exception as error:  # its text may name the queue's URL: never its credentials
            messages.error(
                request,
                gettext("Could not enqueue the flush: %(error)s")
                % {"error": redact_text(str(error))},
            )
            return HttpResponseRedirect(target)
        outcome = flush_now.wait(result, since, current_app=site)
        if outcome.done:
            return finish_flush_now(request, outcome, target)
        # In UTC: a naive time's ISO form has no fold (which pass of a repeated hour).
        query = urlencode({"since": periods.utc(since).isoformat(), "next": target})
        url = reverse("admin:impressions_flush_wait", args=[result.id], current_app=site)
        return HttpResponseRedirect(f"{url}?{query}")

    def flush_wait_view(self, request, result_id):
        """GET: the flush asked for has not run yet: this page looks again every second."""
        if not self.has_flush_now_permission(request):
            raise PermissionDenied
        request.current_app = site = self.admin_site.name
        target = safe_next(request, request.GET.get("next", ""), site)
        try:
            # In UTC; a naive one (a link of an earlier version) as TIME_ZONE's wall clock.
            since = periods.utc(datetime.fromisoformat(request.GET.get("since", "")))
        except (ValueError, OverflowError):  # OverflowError: in UTC, before year 1 or after 9999
            return HttpResponseBadRequest(
                gettext("since must be the ISO time the flush was asked for.")
            )
        outcome = flush_now.outcome_of(result_id, since, current_app=site)
        if outcome.done:
            return finish_flush_now(request, outcome, target)
        waited = periods.utc(timezone.now()) - since
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Flushing impressions"),
            "opts": self.opts,
            "waited": dashboard.duration_text(waited),
            "no_worker": waited.total_seconds() > flush_now.NO_WORKER_AFTER,
            "refresh": 1 if waited.total_seconds() < flush_now.NO_WORKER_AFTER else 5,
            "back_url": target,
        }
        return TemplateResponse(request, "admin/impressions/flush_wait.html", context)


def safe_next(request, target, current_app):
    """`target` if it is a page of this site, else the ledger of the admin site `current_app`."""
    if url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return reverse("admin:impressions_flush_changelist", current_app=current_app)


def finish_flush_now(request, outcome, target):
    (messages.success if outcome.ok else messages.error)(request, outcome.message)
    return HttpResponseRedirect(target)


def exact_time(moment):
    """2026-12-02 16:00:55 in the current time zone: a ledger is read to the second."""
    if timezone.is_aware(moment):  # else USE_TZ = False: already TIME_ZONE's wall clock
        moment = timezone.localtime(moment)
    return formats.date_format(moment, "Y-m-d H:i:s")


def model_admin_on(admin_site, model):
    """The ModelAdmin `admin_site` registers `model` with, or None."""
    try:
        return admin_site.get_model_admin(model)
    except NotRegistered:
        return None


def flush_now_context(request, admin_site):
    """The "Flush now" button's URL on `admin_site`, for users who may press it there."""
    flush_admin = model_admin_on(admin_site, Flush)
    may_flush = getattr(flush_admin, "has_flush_now_permission", None)
    if may_flush is None or not may_flush(request):
        return {}
    return {"flush_now_url": dashboard.admin_url("admin:impressions_flush_now", admin_site.name)}


def may_view(request, admin_site, model):
    """Whether `admin_site` registers `model` and its admin lets this user view it: a link to a
    page that would answer 403 (or 404) is no link to show."""
    model_admin = model_admin_on(admin_site, model)
    return model_admin is not None and model_admin.has_view_permission(request)


def dashboard_url(request, admin_site):
    """The dashboard's URL on `admin_site`, for users who may view it there; else None."""
    if not may_view(request, admin_site, Dashboard):
        return None
    return dashboard.admin_url("admin:impressions_dashboard_changelist", admin_site.name)


class PendingImpressionsAdminMixin:
    """For the counted model's admin: a live "pending" column, one Redis round trip per page;
    and the count field read-only, never written by the admin's save: a form loaded before a
    flush, or a flush committed between the admin's read of the row and its save, would
    otherwise put the older count back."""

    change_list_template = "admin/impressions/post_change_list.html"

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        count = self._impressions_count_field()
        if count is not None and count not in fields:
            fields.append(count)
        return fields

    def save_model(self, request, obj, form, change):
        count = self._impressions_count_field()
        if not change or count is None:
            return super().save_model(request, obj, form, change)
        # Every other concrete field, as a save() writes them; the flush alone writes the count.
        obj.save(
            update_fields=[
                field.name
                for field in obj._meta.concrete_fields
                if not field.primary_key and field.name != count
            ]
        )

    def _impressions_count_field(self):
        """IMPRESSIONS_COUNT_FIELD if this admin's model has it, in the counted table: the
        counted model, a proxy of it or the model it proxies, a multi-table child of it; else
        None."""
        try:
            counted = counted_model()
        except (LookupError, ValueError, TypeError, AttributeError):
            return None
        return conf.COUNT_FIELD if counts_into(self.model, counted) else None

    def _counted_ids(self, posts):
        """Each row's id in the counted table: not the pk of a multi-table child with a key of
        its own (counted_id)."""
        if self._impressions_count_field() is None:
            return [post.pk for post in posts]
        counted = counted_model()
        return [counted_id(post, counted) for post in posts]

    @admin.display(description=gettext_lazy("pending (Redis)"))
    def pending_impressions(self, post):
        pending = getattr(post, "pending_impressions_value", None)
        return gettext("unavailable") if pending is None else pending

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        posts = list(changelist.result_list)  # evaluated once; the template reuses this cache
        ids = self._counted_ids(posts)
        try:
            counts, reported_lost = pending_status(ids)
        except Exception:
            counts, reported_lost = None, None
        for post, post_id in zip(posts, ids, strict=True):
            post.pending_impressions_value = None if counts is None else counts[post_id]
        request.impressions_status = {
            "impressions_redis_available": counts is not None,
            "impressions_lost": reported_lost,
            "impressions_lost_here": lost.unreported,
        }
        return changelist

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context is not None:
            context.update(getattr(request, "impressions_status", {}))
            context.update(flush_now_context(request, self.admin_site))
            context["impressions_dashboard_url"] = dashboard_url(request, self.admin_site)
            context.update(self._column_labels())
        return response

    def _column_labels(self):
        """The headers of the pending and count columns, as the list shows them: the note over it
        said "pending" and "impressions", whatever this model's count field is called."""
        count = self._impressions_count_field()
        pending = label_for_field("pending_impressions", self.model, model_admin=self)
        return {
            "impressions_pending_label": capfirst(pending),
            "impressions_count_label": capfirst(label_for_field(count, self.model))
            if count
            else gettext("impressions"),
        }


@admin.register(Dashboard)
class DashboardAdmin(ReadOnlyAdmin):
    """/admin/impressions/dashboard/: charts, top objects, every object ranked, the buffer;
    read-only. Every page of it needs the dashboard's view permission (impressions.view_dashboard,
    Django's default has_view_permission); the counted objects' names and links, the ledger's
    links and "Flush now" each need their own (dashboard.describe_objects, flush_now_context)."""

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("csv/", view(self.csv_view), name="impressions_dashboard_csv"),
            path("objects/", view(self.objects_view), name="impressions_dashboard_objects"),
            path("objects/csv/", view(self.objects_csv_view), name="impressions_objects_csv"),
            # The list page alone: the dashboard has no rows of its own to open, add or delete
            # (its proxy's table is the site-wide days, which the chart shows).
            path("", view(self.changelist_view), name="impressions_dashboard_changelist"),
        ]

    def may_view_objects(self, request):
        """Whether this user may see the counted objects' names and links to their pages: the
        counted model's admin on this site decides, as for the object's own page (its
        has_view_permission or has_change_permission, which a project may override); on a site
        that does not register the model, its view (or change) permission. A user who may not
        sees ids and counts."""
        model = counted_model()
        model_admin = model_admin_on(self.admin_site, model)
        if model_admin is not None:
            return model_admin.has_view_or_change_permission(request)
        opts = model._meta
        return any(
            request.user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}")
            for action in ("view", "change")
        )

    def page_range(self, request):
        """(today, the DateRange asked for or the default, the error message or None)."""
        today = stats.today()
        try:
            return today, dashboard.parse_range(request.GET, today), None
        except dashboard.BadRange as bad:
            return today, dashboard.parse_range({}, today), str(bad)

    def page_context(self, request, title, today, date_range, error):
        request.current_app = site = self.admin_site.name
        return {
            **self.admin_site.each_context(request),
            **flush_now_context(request, self.admin_site),
            "title": title,
            "opts": self.model._meta,
            "today": today,
            "range": date_range,
            "range_error": error,
            "range_input": dashboard.range_input(request.GET, date_range, error),
            "quick_ranges": dashboard.quick_ranges(date_range),
            "csv_url": reverse("admin:impressions_dashboard_csv", current_app=site),
            "objects_url": reverse("admin:impressions_dashboard_objects", current_app=site),
            "objects_csv_url": reverse("admin:impressions_objects_csv", current_app=site),
            "dashboard_url": reverse("admin:impressions_dashboard_changelist", current_app=site),
            # The counted model's names ("post", "posts"): the pages say what is counted.
            **dict(zip(("counted_one", "counted_many"), counted_names(), strict=True)),
            **dashboard.delay_texts(),
        }

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            raise PermissionDenied
        today, date_range, error = self.page_range(request)
        buffer = read_buffer()
        chart = dashboard.site_chart(date_range, today, buffer)
        site = self.admin_site.name
        names = self.may_view_objects(request)
        top_lists = dashboard.top_lists(today, date_range, names, buffer, site)
        context = {
            **self.page_context(
                request, gettext("Impressions dashboard"), today, date_range, error
            ),
            "chart": chart,
            "chart_id": "site",
            "totals": dashboard.site_total(chart, date_range, today, buffer),
            "oldest_kept_day": stats.oldest_kept_day(today),
            "top_lists": top_lists,
            "top_live": any(top["live"] for top in top_lists),
            "buffer": dashboard.buffer_panel(
                buffer, site, ledger_links=may_view(request, self.admin_site, Flush)
            ),
            "extra_panels": dashboard.extra_panels(request),
            **(extra_context or {}),
        }
        status = 400 if error else 200
        return TemplateResponse(request, "admin/impressions/dashboard.html", context, status=status)

    def objects_view(self, request):
        """GET: every object by its impressions in the range, a page at a time."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        today, date_range, error = self.page_range(request)
        page_text = request.GET.get("page", "1")
        page = dashboard.page_number(page_text)
        page_error = None
        if page is None:
            page_error = gettext("page must be a whole number from 1, not %(given)r.") % {
                "given": page_text[:20]
            }
        listing = dashboard.ranked_objects(
            date_range, today, page or 1, self.may_view_objects(request), self.admin_site.name
        )
        if listing["past_end"]:
            page_error = gettext(
                "Page %(page)s is past the end: %(objects)s had impressions %(during)s,"
                " %(size)s a page."
            ) % {
                "page": page_text.strip()[:20],
                "objects": counted_objects(listing["object_count"]),
                "during": date_range.during,
                "size": formats.number_format(listing["page_size"]),
            }
        title = gettext("%(objects)s by impressions") % {"objects": capfirst(counted_plural())}
        context = {
            **self.page_context(request, title, today, date_range, error),
            **listing,
            "page_error": page_error,
        }
        status = 400 if error or page_error else 200
        return TemplateResponse(request, "admin/impressions/objects.html", context, status=status)

    def objects_csv_view(self, request):
        """GET: `rank,object_id,object,impressions` of every object with impressions in the range."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            date_range = dashboard.parse_range(request.GET, stats.today())
        except dashboard.BadRange as bad:
            return HttpResponseBadRequest(str(bad), content_type="text/plain; charset=utf-8")
        response = StreamingHttpResponse(
            dashboard.ranked_csv_lines(date_range, names=self.may_view_objects(request)),
            content_type="text/csv; charset=utf-8",
        )
        filename = (
            f"impressions-all-{date_range.start.isoformat()}-{date_range.end.isoformat()}.csv"
        )
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    def csv_view(self, request):
        """GET: per-day counts of `post`, or of the top posts of the range, as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            date_range = dashboard.parse_range(request.GET, stats.today())
            post_text = request.GET.get("post", "").strip()
            post_id = dashboard.object_id(post_text) if post_text else None
            if post_text and post_id is None:
                raise dashboard.BadRange(
                    gettext(
                        "post must be an object id, a whole number from %(min)s to %(max)s,"
                        " not %(given)r."
                    )
                    % {
                        "min": dashboard.MIN_OBJECT_ID,
                        "max": dashboard.MAX_OBJECT_ID,
                        "given": post_text[:20],
                    }
                )
        except dashboard.BadRange as bad:
            return HttpResponseBadRequest(str(bad), content_type="text/plain; charset=utf-8")
        start, end = date_range.start, date_range.end
        if post_id is not None:
            if not dashboard.known_object(post_id, start, end):
                return HttpResponseNotFound(
                    gettext(
                        "No %(object)s has the id %(id)s, and the history has no impressions"
                        " of that id %(during)s."
                    )
                    % {"object": counted_names()[0], "id": post_id, "during": date_range.during},
                    content_type="text/plain; charset=utf-8",
                )
            post_ids, name = [post_id], f"impressions-{post_id}"
        else:
            post_ids = [object_id for object_id, _ in stats.top_posts(start, end)]
            name = "impressions-top"
        out = io.StringIO()
        stats.write_csv(out, post_ids, start, end)
        response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
        filename = f"{name}-{start.isoformat()}-{end.isoformat()}.csv"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


class HistoryChartAdminMixin:
    """For the counted model's admin: each row links to the object's chart; the change page shows
    its impressions (in the database, not yet flushed, the last 30 days) beside its chart."""

    change_form_template = "admin/impressions/object_change_form.html"

    @admin.display(description=gettext_lazy("chart"))
    def impressions_chart_link(self, obj):
        url = reverse(
            admin_urlname(obj._meta, "change"), args=[obj.pk], current_app=self.admin_site.name
        )
        days = ngettext("%(days)s day", "%(days)s days", dashboard.DEFAULT_DAYS) % {
            "days": dashboard.DEFAULT_DAYS
        }
        return format_html('<a href="{}#impressions">{}</a>', url, days)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and not add:
            history = dashboard.object_history(obj, stats.today(), current_app=self.admin_site.name)
            if dashboard_url(request, self.admin_site) is None:  # the links would answer 403
                history.update(impressions_csv_url=None, impressions_dashboard_url=None)
            context.update(history)
        return super().render_change_form(request, context, add, change, form_url, obj)
