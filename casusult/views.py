"""The timeline, as an HTML page and as JSON, paged by cursor; each page records its impressions.
And the logout page."""

from urllib.parse import urlencode

from django.contrib.auth import views as auth_views
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe

import impressions

from .methods import api_safe_methods, page_safe_methods
from .models import Post
from .paging import PAGE_SIZE, BadCursor, decode_cursor, page_after

__all__ = ["PAGE_SIZE", "LogoutView", "favicon", "timeline", "timeline_api"]


class BadPage(ValueError):
    """The paging parameters do not name a page of this timeline.

    str() is for developers (the JSON API); `reason` says it to a visitor of the HTML page.
    """

    def __init__(self, message, reason):
        super().__init__(message)
        self.reason = reason


RETIRED_PAGES = (
    "Pages of the timeline are no longer numbered: start from the newest posts and follow"
    " the “Older posts” link at the bottom of each page."
)
BROKEN_LINK = (
    "This link to older posts is broken or out of date (it may have been copied only in part)."
)


def timeline_page(request):
    """The requested page of the timeline, newest first; raises BadPage on bad input."""
    page = request.GET.get("page")
    cursor = request.GET.get("cursor")
    if page is not None and page != "1":
        # Numbered pages needed COUNT(*) and OFFSET; bookmarks of the first page still work.
        raise BadPage(
            f"page={page!r} is not served: page numbers are retired, only page=1 is; follow the"
            " `next` link (JSON) or the older-posts link (HTML), which carry a cursor",
            RETIRED_PAGES,
        )
    if page is not None and cursor is not None:
        raise BadPage("give a cursor or page=1, not both", BROKEN_LINK)
    try:
        position = None if cursor is None else decode_cursor(cursor)
    except BadCursor as error:
        raise BadPage(
            f"bad cursor: {error}; start again from the first page", BROKEN_LINK
        ) from None
    posts = Post.objects.select_related("author").only(
        "id", "body", "created_at", "impressions", "author__username"
    )
    return page_after(posts, position)


# GET and HEAD only (a HEAD is answered but not counted: impressions counts GETs alone);
# OPTIONS, TRACE, POST… are a 405 naming the allowed methods (casusult.methods). Never stored
# by a shared cache (Cache-Control: private): a page a CDN served from its store records nobody's
# impressions, and a logged-in page holds its viewer's CSRF token.
@page_safe_methods
@cache_control(private=True)
def timeline(request):
    try:
        page = timeline_page(request)
    except BadPage as error:
        return render(request, "casusult/bad_page.html", {"reason": error.reason}, status=400)
    impressions.record(request, page.items)  # exactly the posts served; never raises
    older = f"?{urlencode({'cursor': page.next_cursor})}" if page.next_cursor else None
    return render(
        request, "casusult/timeline.html", {"page": page, "posts": page.items, "older": older}
    )


@api_safe_methods
@cache_control(private=True)
def timeline_api(request):
    try:
        page = timeline_page(request)
    except BadPage as error:
        return JsonResponse({"error": str(error)}, status=400)
    impressions.record(request, page.items)
    next_url = None
    if page.next_cursor:
        query = urlencode({"cursor": page.next_cursor})
        next_url = request.build_absolute_uri(f"{reverse('timeline-api')}?{query}")
    return JsonResponse(
        {
            "results": [
                {
                    "id": post.id,
                    "author": post.author.username,
                    "body": post.body,
                    "created_at": post.created_at.isoformat(),
                    "impressions": post.impressions,
                }
                for post in page.items
            ],
            "next": next_url,
        }
    )


@require_safe
def favicon(request):
    """/favicon.ico, which browsers ask for on pages without an icon link (the admin's)."""
    response = HttpResponseRedirect(static("casusult/favicon.svg"))
    response["Cache-Control"] = "max-age=86400"  # temporary: the static name changes on deploys
    return response


class LogoutView(auth_views.LogoutView):
    """Django's logout, POST only since Django 5.0 (a link must not log anybody out), with a GET
    that asks to confirm (a form posting here) instead of a bare 405. CSRF-protected as Django's."""

    http_method_names = ["get", "post", "options"]

    def get(self, request, *args, **kwargs):
        return render(request, "registration/logout_confirm.html")
