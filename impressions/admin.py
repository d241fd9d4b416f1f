"""Admin: the read-only flush ledger, a "flush now" button, and live pending counts for posts."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme

from .models import Flush
from .recorder import lost, pending_status
from .tasks import enqueue_flush


@admin.register(Flush)
class FlushAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "started_at",
        "finished_at",
        "outcome",
        "posts_updated",
        "impressions_applied",
        "posts_dropped",
        "impressions_dropped",
        "recovered_by",
    ]
    list_filter = ["outcome"]
    search_fields = ["id", "recovered_by"]
    date_hierarchy = "started_at"

    # The ledger is derived data and the exactly-once gate: nobody edits or deletes it here.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

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
