"""A page loaded into a frame counts only where its response lets the browser show it there
(impressions/framing.py): X-Frame-Options and CSP frame-ancestors, as Django's middleware sets
them. The real browser's side is test_browser_frames.py; here the headers Chromium sends."""

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path
from django.utils.csp import CSP
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csp import csp_override

import impressions
from casusult.models import Post
from impressions.recorder import pending_counts
from impressions.signals import impressions_ignored
from tests.factories import make_posts

pytestmark = pytest.mark.django_db

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)


def page(request):
    impressions.record(request, list(Post.objects.all()))
    return HttpResponse("posts")


def own_header(request):
    response = page(request)
    response["X-Frame-Options"] = "SAMEORIGIN"
    return response


def own_policy(request):
    response = page(request)
    response[CSP.HEADER_ENFORCE] = "default-src 'self'; frame-ancestors 'none'"
    return response


def streamed(request):
    def rows():
        posts = list(Post.objects.all())
        impressions.record(request, posts)  # once the response and its headers are on their way
        yield from (f"{post.id}\n" for post in posts)

    return StreamingHttpResponse(rows())


async def async_page(request):
    posts = [post async for post in Post.objects.all()]
    await impressions.arecord(request, posts)
    return HttpResponse("posts")


urlpatterns = [
    path("page/", page),
    path("exempt/", xframe_options_exempt(page)),
    path("unframed/", csp_override({})(xframe_options_exempt(page))),
    path("own-header/", own_header),
    path("own-policy/", own_policy),
    path("async/", async_page),
    path("streamed/", streamed),
]

XFO = "django.middleware.clickjacking.XFrameOptionsMiddleware"
COOKIES = "impressions.middleware.VisitorCookieMiddleware"
# The demo site's: X-Frame-Options DENY, frame-ancestors 'none'.
SITE = {}
NO_ANCESTORS = {"SECURE_CSP": {"default-src": [CSP.SELF]}}  # X-Frame-Options alone decides
SAMEORIGIN = {**NO_ANCESTORS, "X_FRAME_OPTIONS": "SAMEORIGIN"}
ANCESTORS_SELF = {"SECURE_CSP": {"frame-ancestors": [CSP.SELF]}}  # X-Frame-Options DENY too
PARTNER = {"SECURE_CSP": {"frame-ancestors": [CSP.SELF, "https://partner.example"]}}
NO_XFO = {**NO_ANCESTORS, "MIDDLEWARE": [m for m in settings.MIDDLEWARE if m != XFO]}
# SECURE_CSP as build_policy also takes it: a directive's one source as a string, or None (off).
NONE_STRING = {**NO_XFO, "SECURE_CSP": {"frame-ancestors": CSP.NONE}}
SELF_STRING = {**NO_XFO, "SECURE_CSP": {"frame-ancestors": CSP.SELF}}
ANCESTORS_OFF = {**NO_XFO, "SECURE_CSP": {"default-src": [CSP.SELF], "frame-ancestors": None}}
NO_COOKIES = {"MIDDLEWARE": [m for m in settings.MIDDLEWARE if m != COOKIES]}
# Middleware that all run async: VisitorCookieMiddleware counts in its async path.
ASYNC_ONLY = {"MIDDLEWARE": ["django.middleware.csp.ContentSecurityPolicyMiddleware", COOKIES, XFO]}


@pytest.mark.parametrize(
    ("url", "site", "dest", "overrides", "counted"),
    [
        # What Chromium sends for another site's, a sibling origin's and an own page's <iframe>.
        ("page/", "cross-site", "iframe", SITE, 0),
        ("page/", "same-site", "iframe", SITE, 0),
        ("page/", "same-origin", "iframe", SITE, 0),
        ("page/", "cross-site", "frame", SITE, 0),
        ("page/", "cross-site", "embed", SITE, 0),
        ("page/", "cross-site", "object", SITE, 0),
        ("page/", "same-origin", "fencedframe", NO_XFO, 0),  # needs Supports-Loading-Mode
        ("page/", "cross-site", "document", SITE, 1),  # a link on another site, followed
        ("page/", None, None, SITE, 1),  # no Fetch Metadata: an app, curl, an older browser
        ("exempt/", "cross-site", "iframe", SITE, 0),  # frame-ancestors 'none' still
        ("unframed/", "cross-site", "iframe", SITE, 1),
        ("page/", "same-origin", "iframe", SAMEORIGIN, 1),
        ("page/", "same-site", "iframe", SAMEORIGIN, 0),
        ("exempt/", "cross-site", "iframe", NO_ANCESTORS, 1),
        ("own-header/", "same-origin", "iframe", NO_ANCESTORS, 1),
        ("own-header/", "cross-site", "iframe", NO_ANCESTORS, 0),
        ("page/", "cross-site", "iframe", NO_XFO, 1),
        ("own-policy/", "cross-site", "iframe", NO_XFO, 0),
        ("page/", "same-origin", "iframe", ANCESTORS_SELF, 1),  # CSP overrides X-Frame-Options
        ("page/", "same-site", "iframe", ANCESTORS_SELF, 0),
        ("page/", "cross-site", "iframe", PARTNER, 1),  # partner.example's own: not told apart
        ("page/", "cross-site", "iframe", NONE_STRING, 0),
        ("page/", "same-site", "iframe", SELF_STRING, 0),
        ("page/", "same-origin", "iframe", SELF_STRING, 1),
        ("page/", "cross-site", "iframe", ANCESTORS_OFF, 1),
        # Without VisitorCookieMiddleware, decided when the view records, from the settings.
        ("page/", "cross-site", "iframe", NO_COOKIES, 0),
        ("page/", "same-origin", "iframe", {**NO_COOKIES, **SAMEORIGIN}, 1),
        ("async/", "cross-site", "iframe", SITE, 0),
        ("async/", "same-origin", "iframe", SAMEORIGIN, 1),
        ("async/", "cross-site", "iframe", ASYNC_ONLY, 0),
        ("async/", "same-origin", "iframe", {**ASYNC_ONLY, **SAMEORIGIN}, 1),
    ],
)  # fmt: skip
def test_a_frame_counts_where_its_response_lets_the_browser_show_it(
    standalone_buffer, url, site, dest, overrides, counted
):
    posts = [post.id for post in make_posts(2)]
    headers = {"User-Agent": CHROME}
    if site:
        headers |= {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": dest}
    with override_settings(ROOT_URLCONF=__name__, **overrides):
        if url == "async/":
            response = async_get(url, headers)
        else:
            response = Client().get(f"/{url}", headers=headers)
        sets_cookie = COOKIES in settings.MIDDLEWARE
    assert response.status_code == 200
    assert set(pending_counts(posts).values()) == {counted}
    assert ("visitor" in response.cookies) == bool(counted and sets_cookie)


@pytest.mark.parametrize(("overrides", "counted"), [(SITE, 0), (NO_XFO, 1)])
def test_a_frame_recorded_while_its_response_streams_is_decided_then(
    standalone_buffer, overrides, counted
):
    # VisitorCookieMiddleware has seen the response already: decided from the settings, as
    # without the middleware, not left for it (never counted).
    posts = [post.id for post in make_posts(2)]
    headers = {"User-Agent": CHROME, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "iframe"}
    with override_settings(ROOT_URLCONF=__name__, **overrides):
        response = Client().get("/streamed/", headers=headers)
        assert len(b"".join(response.streaming_content).split()) == 2
    assert set(pending_counts(posts).values()) == {counted}


def async_get(url, headers):
    return async_to_sync(AsyncClient().get)(f"/{url}", headers=headers)


def test_a_refused_frame_is_reported_as_ignored(standalone_buffer):
    make_posts(3)
    reasons = []

    def receiver(sender, reason, served, **kwargs):
        reasons.append((reason, served))

    impressions_ignored.connect(receiver)
    try:
        with override_settings(ROOT_URLCONF=__name__):
            Client().get(
                "/page/", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "iframe"}
            )
    finally:
        impressions_ignored.disconnect(receiver)
    assert reasons == [("frame", 3)]
