"""Viewer identity on the real timeline: visitor cookie, cookie-less digest, bots and prefetches."""

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.core import signing
from django.db import connection
from django.http import HttpResponse
from django.test import Client, RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import path

import devservices
import impressions
from casusult.models import Post
from impressions import salt, viewers
from impressions.keys import salt_key
from impressions.recorder import get_client, lost, pending_counts
from tests import services
from tests.factories import make_posts, make_user

from .support import reset_loss_counter

pytestmark = pytest.mark.django_db

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
COOKIE = "visitor"


@pytest.fixture
def day(monkeypatch):
    """The UTC day the viewers module sees, settable: `day.set("20991201")`."""

    class Day:
        def set(self, value):
            monkeypatch.setattr(viewers, "utc_day", lambda now=None: value)

    clock = Day()
    clock.set("20991128")
    return clock


@pytest.fixture
def posts(standalone_buffer):
    salt.forget()  # the buffer was emptied: a salt this process remembers is gone from Redis
    return [post.id for post in make_posts(3)]


def get(client, **headers):
    response = client.get("/api/timeline/", **headers)
    assert response.status_code == 200
    return response


def visitor_cookie(response):
    return response.cookies.get(COOKIE)


def counts(ids):
    return set(pending_counts(ids).values())


def test_a_new_anonymous_visitor_gets_the_cookie_once_and_keeps_it(client, posts, day):
    first = get(client, HTTP_USER_AGENT=CHROME)
    cookie = visitor_cookie(first)
    assert cookie is not None and cookie.value
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["max-age"] == 365 * 24 * 3600
    assert cookie["path"] == "/"
    assert not cookie["secure"]  # settings.test; see the next test
    assert client.cookies[COOKIE].value == cookie.value
    second = get(client, HTTP_USER_AGENT=CHROME)
    assert visitor_cookie(second) is None  # reused, not made again
    assert "sessionid" not in client.cookies


@pytest.mark.parametrize(
    ("overrides", "secure"),
    [
        ({"SESSION_COOKIE_SECURE": True}, True),
        ({"SESSION_COOKIE_SECURE": True, "IMPRESSIONS_VISITOR_COOKIE_SECURE": False}, False),
        ({"IMPRESSIONS_VISITOR_COOKIE_SECURE": True}, True),
    ],
)
def test_the_cookie_is_secure_when_sessions_are_or_when_told(client, posts, overrides, secure):
    with override_settings(**overrides, IMPRESSIONS_VISITOR_COOKIE_NAME="v2"):
        cookie = get(client).cookies["v2"]
    assert bool(cookie["secure"]) is secure


def test_a_new_visitor_reloading_with_its_cookie_counts_once(client, posts, day):
    get(client, HTTP_USER_AGENT=CHROME)  # no cookie yet: counted as its digest
    get(client, HTTP_USER_AGENT=CHROME)  # the cookie names the same digest for today
    assert counts(posts) == {1}


def test_from_the_next_day_the_cookie_is_the_viewer_wherever_it_comes_from(client, posts, day):
    get(client, HTTP_USER_AGENT=CHROME, REMOTE_ADDR="198.51.100.1")
    day.set("20991129")
    get(client, HTTP_USER_AGENT=CHROME, REMOTE_ADDR="198.51.100.1")  # the cookie's id: 2nd view
    get(client, HTTP_USER_AGENT=FIREFOX, REMOTE_ADDR="203.0.113.9")  # same cookie: same viewer
    assert counts(posts) == {2}
    # Without the cookie, the same address and browser are a cookie-less viewer of that day.
    get(Client(), HTTP_USER_AGENT=CHROME, REMOTE_ADDR="198.51.100.1")
    assert counts(posts) == {3}


def test_a_cookie_less_reload_counts_once_another_agent_or_address_is_another_viewer(posts, day):
    get(Client(), HTTP_USER_AGENT=CHROME, REMOTE_ADDR="198.51.100.1")
    get(Client(), HTTP_USER_AGENT=CHROME, REMOTE_ADDR="198.51.100.1")  # the reload
    assert counts(posts) == {1}
    get(Client(), HTTP_USER_AGENT=FIREFOX, REMOTE_ADDR="198.51.100.1")
    assert counts(posts) == {2}
    get(Client(), HTTP_USER_AGENT=CHROME, REMOTE_ADDR="198.51.100.2")
    assert counts(posts) == {3}


def test_the_digest_salt_rotates_daily(posts, day):
    get(Client(), HTTP_USER_AGENT=CHROME)
    day.set("20991129")
    get(Client(), HTTP_USER_AGENT=CHROME)  # inside the window, but another day's digest
    assert counts(posts) == {2}


@pytest.mark.parametrize(
    "user_agent",
    [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Twitterbot/1.0",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
    ],
)
def test_bots_are_not_counted_and_get_no_cookie(client, posts, user_agent):
    response = get(client, HTTP_USER_AGENT=user_agent)
    assert visitor_cookie(response) is None
    assert counts(posts) == {0}


@pytest.mark.parametrize(
    "header",
    [
        {"HTTP_SEC_PURPOSE": "prefetch"},
        {"HTTP_SEC_PURPOSE": "prefetch;prerender"},
        {"HTTP_PURPOSE": "prefetch"},
        {"HTTP_X_MOZ": "prefetch"},
        {"HTTP_X_PURPOSE": "preview"},
    ],
)
def test_prefetches_are_not_counted_logged_in_or_not(client, posts, header):
    response = get(client, HTTP_USER_AGENT=CHROME, **header)
    assert visitor_cookie(response) is None
    client.force_login(make_user("prefetcher"))
    get(client, HTTP_USER_AGENT=CHROME, **header)
    assert counts(posts) == {0}
    get(client, HTTP_USER_AGENT=CHROME)  # the same user's real view
    assert counts(posts) == {1}


# What a browser sends when another site's page loads the timeline as an image, a script or a
# no-cors fetch: Chromium, from a page of another origin, counted each (20 impressions a visitor).
SUBRESOURCES = [
    {"HTTP_SEC_FETCH_SITE": "cross-site", "HTTP_SEC_FETCH_MODE": "no-cors", "HTTP_SEC_FETCH_DEST": "image"},
    {"HTTP_SEC_FETCH_SITE": "cross-site", "HTTP_SEC_FETCH_MODE": "no-cors", "HTTP_SEC_FETCH_DEST": "empty"},
    {"HTTP_SEC_FETCH_SITE": "cross-site", "HTTP_SEC_FETCH_MODE": "no-cors", "HTTP_SEC_FETCH_DEST": "script"},
    {"HTTP_SEC_FETCH_SITE": "same-site", "HTTP_SEC_FETCH_MODE": "no-cors", "HTTP_SEC_FETCH_DEST": "empty"},
    {"HTTP_SEC_FETCH_SITE": "same-origin", "HTTP_SEC_FETCH_MODE": "no-cors", "HTTP_SEC_FETCH_DEST": "style"},
]  # fmt: skip


@pytest.mark.parametrize("headers", SUBRESOURCES)
def test_a_page_loaded_as_an_image_script_or_opaque_fetch_is_not_counted(client, posts, headers):
    response = get(client, HTTP_USER_AGENT=CHROME, **headers)
    assert visitor_cookie(response) is None
    client.force_login(make_user("embedder"))
    get(client, HTTP_USER_AGENT=CHROME, **headers)
    assert counts(posts) == {0}
    get(client, HTTP_USER_AGENT=CHROME, HTTP_SEC_FETCH_MODE="cors", HTTP_SEC_FETCH_DEST="empty")
    assert counts(posts) == {1}  # the same user's fetch that reads the answer


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no browser: an app, a script
        {"HTTP_SEC_FETCH_SITE": "none", "HTTP_SEC_FETCH_MODE": "navigate", "HTTP_SEC_FETCH_DEST": "document"},
        {"HTTP_SEC_FETCH_SITE": "cross-site", "HTTP_SEC_FETCH_MODE": "navigate", "HTTP_SEC_FETCH_DEST": "document"},
        {"HTTP_SEC_FETCH_SITE": "same-origin", "HTTP_SEC_FETCH_MODE": "cors", "HTTP_SEC_FETCH_DEST": "empty"},
        {"HTTP_SEC_FETCH_SITE": "same-origin", "HTTP_SEC_FETCH_MODE": "no-cors", "HTTP_SEC_FETCH_DEST": "empty"},
    ],
)  # fmt: skip
def test_pages_and_fetches_that_show_the_posts_still_count(posts, headers):
    get(Client(), HTTP_USER_AGENT=CHROME, **headers)
    assert counts(posts) == {1}


# Another site's plain fetch() of the timeline: cors mode, no preflight, so the request is made
# and counted; but without Access-Control-Allow-Origin for that site the page cannot read it.
CROSS_SITE_FETCH = {
    "HTTP_SEC_FETCH_SITE": "cross-site",
    "HTTP_SEC_FETCH_MODE": "cors",
    "HTTP_SEC_FETCH_DEST": "empty",
    "HTTP_ORIGIN": "https://elsewhere.example",
}


def test_another_site_s_fetch_is_not_counted_unless_its_origin_is_trusted(client, posts):
    response = get(client, HTTP_USER_AGENT=CHROME, **CROSS_SITE_FETCH)
    assert visitor_cookie(response) is None
    client.force_login(make_user("reader"))
    get(client, HTTP_USER_AGENT=CHROME, **CROSS_SITE_FETCH)
    assert counts(posts) == {0}
    # An app of the project's on another site, which CORS lets read the answer: a view.
    with override_settings(IMPRESSIONS_CROSS_SITE_ORIGINS=["https://ELSEWHERE.example"]):
        get(client, HTTP_USER_AGENT=CHROME, **CROSS_SITE_FETCH)
    assert counts(posts) == {1}
    with override_settings(IMPRESSIONS_CROSS_SITE_ORIGINS=["*"]):
        get(Client(), HTTP_USER_AGENT=CHROME, **CROSS_SITE_FETCH)
    assert counts(posts) == {2}
    # A sibling site (app.example.com fetching api.example.com) is the project's own: counted.
    sibling = Client()
    sibling.force_login(make_user("sibling"))
    get(sibling, HTTP_USER_AGENT=CHROME, **{**CROSS_SITE_FETCH, "HTTP_SEC_FETCH_SITE": "same-site"})
    assert counts(posts) == {3}


# Origins browsers send for a project's own apps that are no web site: an iOS Capacitor or Ionic
# app's WKWebView (capacitor://localhost, ionic://localhost), a browser extension; and an origin
# written with its scheme's default port, which browsers leave out of Origin.
@pytest.mark.parametrize(
    ("listed", "origin"),
    [
        ("capacitor://localhost", "capacitor://localhost"),
        ("ionic://localhost", "ionic://localhost"),
        (
            "chrome-extension://abcdefghijklmnopabcdefghijklmnop",
            "chrome-extension://abcdefghijklmnopabcdefghijklmnop",
        ),
        ("https://app.example:443", "https://app.example"),
        ("HTTP://App.Example:80", "http://app.example"),
        ("http://[::1]:3000", "http://[::1]:3000"),
    ],
)
def test_a_listed_origin_counts_as_browsers_send_it(posts, listed, origin):
    with override_settings(IMPRESSIONS_CROSS_SITE_ORIGINS=[listed]):
        get(Client(), HTTP_USER_AGENT=CHROME, **{**CROSS_SITE_FETCH, "HTTP_ORIGIN": origin})
    assert counts(posts) == {1}


def test_the_ignore_pattern_is_a_setting(posts):
    with override_settings(IMPRESSIONS_IGNORE_USER_AGENTS=""):
        get(Client(), HTTP_USER_AGENT="Googlebot/2.1 (a)")
    assert counts(posts) == {1}
    with override_settings(IMPRESSIONS_IGNORE_USER_AGENTS=r"^Firefox-Lover/"):
        get(Client(), HTTP_USER_AGENT="firefox-lover/1.0")  # case-insensitive
        get(Client(), HTTP_USER_AGENT="Googlebot/2.1 (b)")  # no longer in the pattern
    assert counts(posts) == {2}


@pytest.mark.parametrize("value", ["garbage", "a" * 300, "x.20991128.y:sig"])
def test_a_bad_visitor_cookie_is_replaced(client, posts, day, value):
    client.cookies[COOKIE] = value
    response = get(client, HTTP_USER_AGENT=CHROME)
    assert visitor_cookie(response).value not in ("", value)
    assert counts(posts) == {1}


def test_a_visitor_cookie_made_for_another_purpose_is_refused(client, posts, day):
    payload = f"{'A' * 16}.20261120.{'0' * 32}"  # well-formed, signed with another salt
    client.cookies[COOKIE] = signing.Signer(salt="another.purpose").sign(payload)
    assert visitor_cookie(get(client)) is not None


def test_neither_the_address_nor_the_user_agent_is_stored(client, posts, day):
    address, agent = "203.0.113.77", "UniqueAgent/9.9 (marker-5c1e)"
    get(client, HTTP_USER_AGENT=agent, REMOTE_ADDR=address)
    day.set("20991129")
    get(client, HTTP_USER_AGENT=agent, REMOTE_ADDR=address)  # now keyed by the cookie's id
    visitor_id = client.cookies[COOKIE].value.split(".", 1)[0]
    stored = dump_redis(get_client())
    assert len(stored) > 5  # the dump really holds the keys and values
    for secret in (address, "marker-5c1e", visitor_id):
        assert secret not in stored


def dump_redis(client):
    """Every key, string value, hash field and value, and set member, as one text."""
    parts = []
    for key in client.scan_iter():
        parts.append(key.decode())
        kind = client.type(key).decode()
        if kind == "string":
            parts.append(repr(client.get(key)))
        elif kind == "hash":
            parts.extend(repr(item) for item in client.hgetall(key).items())
        elif kind == "zset":
            parts.extend(repr(member) for member in client.zrange(key, 0, -1))
        elif kind == "set":
            parts.extend(repr(member) for member in client.smembers(key))
    return "\n".join(parts)


def test_the_daily_salt_is_random_shared_and_expires_after_its_day(standalone_buffer):
    salt.forget()
    first = salt.daily_salt("20991128")
    assert len(first) == 32
    assert standalone_buffer.get(salt_key("20991128")) == first
    salt.forget()  # another process: it reads the salt the first one made
    assert salt.daily_salt("20991128") == first
    other = salt.daily_salt("20991129")
    assert other != first
    assert not any("20991128" in key for key, *_ in salt._cached)  # forgotten in this process
    end_of_day = datetime(2099, 11, 29, tzinfo=UTC).timestamp()
    expires = standalone_buffer.expiretime(salt_key("20991128"))
    assert expires == end_of_day + salt.GRACE_SECONDS


@override_settings(IMPRESSIONS_TRUSTED_PROXIES=1)
def test_behind_one_proxy_the_forwarded_address_is_the_client_and_forged_parts_are_ignored(
    posts, day
):
    balancer = {"REMOTE_ADDR": "10.0.0.5", "HTTP_USER_AGENT": CHROME}
    get(Client(), HTTP_X_FORWARDED_FOR="198.51.100.7", **balancer)
    get(Client(), HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.7", **balancer)  # forged left part
    assert counts(posts) == {1}
    get(Client(), HTTP_X_FORWARDED_FOR="198.51.100.8", **balancer)  # another client
    assert counts(posts) == {2}


@override_settings(IMPRESSIONS_TRUSTED_PROXIES=1)
def test_behind_a_proxy_that_appends_the_port_a_new_connection_is_the_same_viewer(posts, day):
    """A reload comes on another connection, from another port: once, as without the port."""
    balancer = {"REMOTE_ADDR": "10.0.0.5", "HTTP_USER_AGENT": CHROME}
    for port in (51234, 51235, 51236):
        get(Client(), HTTP_X_FORWARDED_FOR=f"198.51.100.7:{port}", **balancer)
    get(Client(), HTTP_X_FORWARDED_FOR="198.51.100.7", **balancer)
    assert counts(posts) == {1}


def test_without_trusted_proxies_x_forwarded_for_is_ignored(posts, day):
    get(Client(), HTTP_X_FORWARDED_FOR="198.51.100.7", HTTP_USER_AGENT=CHROME)
    get(Client(), HTTP_X_FORWARDED_FOR="198.51.100.8", HTTP_USER_AGENT=CHROME)
    assert counts(posts) == {1}


def test_switched_off_nothing_is_recorded_and_no_cookie_is_set(client, posts, standalone_buffer):
    with override_settings(IMPRESSIONS_ENABLED=False):
        assert visitor_cookie(get(client)) is None
        get(Client(), HTTP_USER_AGENT="Googlebot/2.1")
        client.force_login(make_user("carol"))
        get(client)
    assert standalone_buffer.dbsize() == 0


@override_settings(IMPRESSIONS_COUNT_ANONYMOUS=False)
def test_anonymous_counting_off_sets_no_cookie(client, posts):
    assert visitor_cookie(get(client)) is None
    assert counts(posts) == {0}


def test_redis_down_before_any_salt_costs_the_impressions_not_the_page(private_redis):
    ids = [post.id for post in make_posts(4)]
    with override_settings(IMPRESSIONS_REDIS_URL=private_redis.url):
        reset_loss_counter()
        private_redis.stop()
        response = Client().get("/api/timeline/", HTTP_USER_AGENT=CHROME)
        assert response.status_code == 200
        assert [item["id"] for item in response.json()["results"]] == ids[::-1]
        assert visitor_cookie(response) is None  # made with the digest, which needs the salt
        assert (lost.requests, lost.impressions) == (1, 4)


def test_a_logged_in_viewer_costs_no_query_after_its_first_view(client, posts):
    client.force_login(make_user("dora"))
    with CaptureQueriesContext(connection) as first:
        get(client)
    with CaptureQueriesContext(connection) as second:
        get(client)
    tables = [q["sql"].split(" FROM ")[1].split()[0] for q in second.captured_queries]
    assert tables == ['"casusult_post"']  # the page only: not the session, not the user
    assert len(first.captured_queries) == 3  # session, user, page
    assert counts(posts) == {1}


def test_logging_in_and_out_changes_the_viewer_at_once(client, posts, day):
    get(client, HTTP_USER_AGENT=CHROME)  # anonymous
    client.force_login(make_user("erin"))
    get(client, HTTP_USER_AGENT=CHROME)  # the user: another viewer
    client.logout()
    get(client, HTTP_USER_AGENT=CHROME)  # anonymous again: the visitor of the first view
    assert counts(posts) == {2}


def test_a_detail_page_may_record_its_one_object(rf, posts):
    request = rf.get("/posts/1/", HTTP_USER_AGENT=CHROME)
    request.user = make_user("fay")
    post = Post.objects.get(pk=posts[0])
    assert impressions.record(request, post).counted == 1
    assert pending_counts(posts) == {posts[0]: 1, posts[1]: 0, posts[2]: 0}


def test_objects_it_cannot_count_are_left_out_and_the_page_s_others_count(rf, posts, caplog):
    request = rf.get("/", HTTP_USER_AGENT=CHROME)
    request.user = make_user("hal")
    first, second = Post.objects.filter(pk__in=posts[:2]).order_by("pk")
    unsaved = Post(author=first.author, body="a draft")
    # An unsaved object once cost the whole page; another model's instance counted the post of
    # its id; a bare id logged a traceback.
    assert impressions.record(request, [first, unsaved, second]).counted == 2
    assert impressions.record(request, [get_user_model()(pk=posts[2])]) is None
    assert impressions.record(request, [posts[2]]) is None
    assert pending_counts(posts) == {posts[0]: 1, posts[1]: 1, posts[2]: 0}
    assert "1 of 3 objects left out, not counted: 1 without a pk" in caplog.text
    assert "auth.User is not casusult.Post" in caplog.text


def test_an_object_whose_pk_is_no_id_is_left_out_and_the_page_s_others_count(rf, posts, caplog):
    """CountedObject is anything with an integer pk: a search hit or a wrapper of the project's.
    One whose pk was no integer (a slug, a UUID) cost the whole page, with a traceback; one past
    a bigint was counted, then set aside by every flush as a counter "the record script did
    not write"."""
    request = rf.get("/", HTTP_USER_AGENT=CHROME)
    request.user = make_user("ida")
    first, second = Post.objects.filter(pk__in=posts[:2]).order_by("pk")
    hits = [SimpleNamespace(pk=pk) for pk in ("a-slug", uuid.uuid4(), 2**63, str(posts[2]))]
    assert impressions.record(request, [first, *hits, second]).counted == 3
    assert pending_counts([*posts, 2**63]) == {posts[0]: 1, posts[1]: 1, posts[2]: 1, 2**63: 0}
    assert (
        "3 of 6 objects left out, not counted: 3 whose pk is no integer id (a bigint's)"
        in caplog.text
    )


def test_an_async_view_counts_a_logged_in_viewer_through_arecord(client, posts):
    client.force_login(make_user("gil"))
    request = RequestFactory().get("/", HTTP_USER_AGENT=CHROME)
    request.COOKIES = {name: morsel.value for name, morsel in client.cookies.items()}
    SessionMiddleware(lambda r: None).process_request(request)
    AuthenticationMiddleware(lambda r: None).process_request(request)  # request.user: lazy
    objects = list(Post.objects.filter(pk__in=posts))

    async def view(call):
        return (
            await call(request, objects) if call is impressions.arecord else call(request, objects)
        )

    assert async_to_sync(view)(impressions.record) is None  # the session cannot load there
    assert async_to_sync(view)(impressions.arecord).counted == 3
    assert counts(posts) == {1}


services.register("doomed_cluster", "a Redis Cluster to stop", devservices.RedisClusterProcess)


@pytest.fixture
def doomed_cluster():
    """A Redis Cluster of the test's own, which it stops (tests/services.py starts it early)."""
    cluster = services.started("doomed_cluster")
    yield cluster
    cluster.stop()


def test_a_cluster_with_every_node_down_costs_a_new_viewer_s_impressions_counted_as_lost(
    doomed_cluster,
):
    # The new viewer's budget check met RedisClusterException, which is no RedisError: a logged
    # traceback, and the impressions were not counted as lost.
    ids = [post.id for post in make_posts(4)]
    cluster = doomed_cluster
    with override_settings(IMPRESSIONS_REDIS_URL=cluster.url):
        assert Client().get("/api/timeline/", HTTP_USER_AGENT=CHROME).status_code == 200
        cluster.stop()  # the client and the day's salt are known; every node is gone
        reset_loss_counter()
        for n in range(3):  # once the client has lost its nodes, it raises another kind
            response = Client().get("/api/timeline/", HTTP_USER_AGENT=f"{CHROME} {n}")
            assert response.status_code == 200
        assert (lost.requests, lost.impressions) == (3, 3 * len(ids))


def cached_page(request):
    impressions.record(request, Post.objects.order_by("id"))
    return HttpResponse("a page a site caches")


urlpatterns = [path("cached/", cached_page)]


@override_settings(
    ROOT_URLCONF=__name__,
    CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
    CACHE_MIDDLEWARE_SECONDS=60,
    MIDDLEWARE=[
        "django.middleware.cache.UpdateCacheMiddleware",
        "impressions.middleware.VisitorCookieMiddleware",
        "django.middleware.cache.FetchFromCacheMiddleware",
    ],
)
def test_a_response_setting_the_visitor_cookie_varies_on_cookie(posts, day):
    """As Django's session middleware does: a shared cache (Django's own per-site cache here)
    must not hand one new visitor's cookie to every visitor after it, who would all be one
    viewer from then on."""
    first = Client().get("/cached/", headers={"User-Agent": CHROME})
    assert "Cookie" in first["Vary"]
    second = Client().get("/cached/", headers={"User-Agent": FIREFOX})
    assert visitor_cookie(second) is not None
    assert visitor_cookie(second).value != visitor_cookie(first).value
    assert counts(posts) == {2}
