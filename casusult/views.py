from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator
from django.http import JsonResponse
from django.shortcuts import render
from django.urls import reverse

import impressions

from .models import Post

PAGE_SIZE = 20


class BadPage(ValueError):
    """The page parameter is not a page of this timeline."""


def timeline_page(request):
    """The requested page of the timeline, newest first; raises BadPage on bad input."""
    posts = Post.objects.select_related("author").only(
        "id", "body", "created_at", "impressions", "author__username"
    )
    paginator = Paginator(posts, PAGE_SIZE)
    raw = request.GET.get("page", "1")
    try:
        if not raw.isascii() or not raw.isdigit():
            raise PageNotAnInteger(raw)
        return paginator.page(raw)
    except PageNotAnInteger:
        raise BadPage(f"page must be a positive whole number, not {raw!r}") from None
    except EmptyPage:
        raise BadPage(f"page {raw} is out of range (1 to {paginator.num_pages})") from None


def timeline(request):
    try:
        page = timeline_page(request)
    except BadPage as error:
        return render(request, "casusult/bad_page.html", {"error": error}, status=400)
    posts = list(page)
    impressions.record(request, posts)  # exactly the posts served; never raises
    return render(request, "casusult/timeline.html", {"page": page, "posts": posts})


def timeline_api(request):
    try:
        page = timeline_page(request)
    except BadPage as error:
        return JsonResponse({"error": str(error)}, status=400)
    posts = list(page)
    impressions.record(request, posts)
    next_url = None
    if page.has_next():
        next_url = request.build_absolute_uri(
            f"{reverse('timeline-api')}?page={page.next_page_number()}"
        )
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
                for post in posts
            ],
            "next": next_url,
        }
    )
