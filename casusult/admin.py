"""The Post admin: flushed and live pending impressions, a link to each post's chart, which its
page shows with its counts."""

from django.contrib import admin

from impressions.admin import HistoryChartAdminMixin, PendingImpressionsAdminMixin

from .models import Post


@admin.register(Post)
class PostAdmin(PendingImpressionsAdminMixin, HistoryChartAdminMixin, admin.ModelAdmin):
    # impressions: flushed to the database (sortable); pending: still in Redis, live.
    list_display = [
        "id",
        "author",
        "short_body",
        "created_at",
        "impressions",
        "pending_impressions",
        "impressions_chart_link",
    ]
    list_filter = [("created_at", admin.DateFieldListFilter)]
    list_select_related = ["author"]
    search_fields = ["body", "author__username"]
    readonly_fields = ["impressions"]
    date_hierarchy = "created_at"

    @admin.display(description="body")
    def short_body(self, post):
        return post.body[:80]
