"""Admin: the flush ledger, "flush now", live pending counts, the dashboard and post charts."""

import io

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import (
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import formats, timezone
from django.utils.http import url_has_allowed_host_and_scheme

from . import dashboard, stats
from .models import Dashboard, Flush
from .recorder import lost, pending_status
from .tasks import enqueue_flush


class ReadOnlyAdmin(admin.ModelAdmin):
    """Derived data: viewed here, never added, edited or deleted."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Flush)
class FlushAdmin(ReadOnlyAdmin):
    # The ledger is derived data and the exactly-once gate: nobody edits or deletes it here.
    # The columns an operator reads first, narrow enough for 1280 px; the rest is on each row's page.
    list_display = [
        "started",
        "outcome",
        "impressions_applied",
        "posts_updated",
        "duration",
        "dropped",
        "recovered_by",
        "id",
    ]
    list_display_links = ["started"]
    list_filter = ["outcome"]
    search_fields = ["id", "recovered_by"]
    date_hierarchy = "started_at"

    @admin.display(description="started", ordering="started_at")
    def started(self, flush):
        return exact_time(flush.started_at)

    @admin.display(description="duration")
    def duration(self, flush):
        if flush.finished_at is None:
            return "not finished"
        return duration_ms_text(flush.finished_at - flush.started_at)

    @admin.display(description="dropped (deleted posts)")
    def dropped(self, flush):
        if not flush.impressions_dropped:
            return "-"
        return f"{flush.impressions_dropped} of {flush.posts_dropped} posts"

    def get_urls(self):
        flush_now = self.admin_site.admin_view(self.flush_now_view)
        return [path("flush-now/", flush_now, name="impressions_flush_now"), *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), **flush_now_context(request)}
        return super().changelist_view(request, extra_context)

    def flush_now_view(self, request):
        """POST: enqueue the flush task to run now."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            result = enqueue_flush(delay=0)
        except Exception as error:
            messages.error(request, f"Could not enqueue the flush: {error}")
        else:
            messages.success(request, f"Flush enqueued (task {result.id}, {result.status}).")
        target = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(target, {request.get_host()}):
            target = reverse("admin:impressions_flush_changelist")
        return HttpResponseRedirect(target)


def exact_time(moment):
    """2026-12-02 16:00:55 in the current time zone: a ledger is read to the second."""
    return formats.date_format(timezone.localtime(moment), "Y-m-d H:i:s")


def duration_ms_text(delta):
    """412 ms, 3.2 s, 2 min 5 s: a flush's run time."""
    ms = delta.total_seconds() * 1000
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    seconds = round(ms / 1000)
    return f"{seconds // 60} min {seconds % 60} s"


def flush_now_context(request):
    if not request.user.has_perm("impressions.view_flush"):
        return {}
    return {"flush_now_url": reverse("admin:impressions_flush_now")}


class PendingImpressionsAdminMixin:
    """For the Post admin: a live "pending" column, one Redis round trip per page."""

    change_list_template = "admin/impressions/post_change_list.html"

    @admin.display(description="pending (Redis)")
    def pending_impressions(self, post):
        pending = getattr(post, "pending_impressions_value", None)
        return "unavailable" if pending is None else pending

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        posts = list(changelist.result_list)  # evaluated once; the template reuses this cache
        try:
            counts, reported_lost = pending_status([post.pk for post in posts])
        except Exception:
            counts, reported_lost = None, None
        for post in posts:
            post.pending_impressions_value = None if counts is None else counts[post.pk]
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
            context.update(flush_now_context(request))
        return response


@admin.register(Dashboard)
class DashboardAdmin(ReadOnlyAdmin):
    """/admin/impressions/dashboard/: charts, top objects, the buffer; staff only, read-only."""

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff

    def get_urls(self):
        csv_view = self.admin_site.admin_view(self.csv_view)
        return [path("csv/", csv_view, name="impressions_dashboard_csv"), *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            raise PermissionDenied
        today = stats.today()
        status, error = 200, None
        try:
            date_range = dashboard.parse_range(request.GET, today)
        except dashboard.BadRange as bad:
            status, error = 400, str(bad)
            date_range = dashboard.parse_range({}, today)
        context = {
            **self.admin_site.each_context(request),
            **flush_now_context(request),
            "title": "Impressions dashboard",
            "opts": self.model._meta,
            "today": today,
            "range": date_range,
            "range_error": error,
            "range_choices": dashboard.RANGE_CHOICES,
            "chart": dashboard.site_chart(date_range),
            "chart_id": "site",
            "top_lists": dashboard.top_lists(today, date_range, request.user),
            "buffer": dashboard.buffer_panel(),
            "extra_panels": dashboard.extra_panels(request),
            "csv_url": reverse("admin:impressions_dashboard_csv"),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/impressions/dashboard.html", context, status=status)

    def csv_view(self, request):
        """GET: per-day counts of `post`, or of the top posts of the range, as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            date_range = dashboard.parse_range(request.GET, stats.today())
            post_text = request.GET.get("post", "").strip()
            if post_text and not (post_text.isascii() and post_text.isdigit()):
                raise dashboard.BadRange(f"post must be an object id, not {post_text[:20]!r}.")
        except dashboard.BadRange as bad:
            return HttpResponseBadRequest(str(bad), content_type="text/plain; charset=utf-8")
        start, end = date_range.start, date_range.end
        if post_text:
            post_ids, name = [int(post_text)], f"impressions-{int(post_text)}"
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
    """For the counted model's admin: the object's impressions per day on its change page."""

    change_form_template = "admin/impressions/object_change_form.html"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        if object_id and object_id.isascii() and object_id.isdigit():
            today = stats.today()
            extra_context.update(
                impressions_chart=dashboard.object_chart(int(object_id), today),
                impressions_chart_id=f"object-{object_id}",
                impressions_csv_url=(
                    f"{reverse('admin:impressions_dashboard_csv')}"
                    f"?post={object_id}&days={dashboard.DEFAULT_DAYS}"
                ),
                impressions_dashboard_url=reverse("admin:impressions_dashboard_changelist"),
            )
        return super().change_view(request, object_id, form_url, extra_context)
