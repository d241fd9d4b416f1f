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
    # A list page reads the posts twice, the paginator's count and the page, however many there
    # are: no date_hierarchy (its first and last day, then every post's month: two more reads of
    # every post, 0.6 s at 1,000,000 posts, 2.6 s in a search; the date filter costs nothing), no
    # second count of every post for "(N total)" beside a filtered count.
    list_filter = [("created_at", admin.DateFieldListFilter)]
    list_select_related = ["author"]
    search_fields = ["body", "author__username"]
    readonly_fields = ["impressions"]
    show_full_result_count = False

    @admin.display(description="body")
    def short_body(self, post):
        return post.body[:80]
