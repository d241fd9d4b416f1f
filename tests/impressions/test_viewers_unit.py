"""Viewer identity without services: client address, bot patterns, prefetches, visitor cookies."""

import logging

import pytest
from asgiref.sync import async_to_sync, iscoroutinefunction
from django.contrib.auth import middleware as auth_middleware
from django.core import signing
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponse
from django.test import RequestFactory, override_settings

from impressions import session_users, viewers
from impressions.checks import check_settings, check_visitor_cookie_middleware
from impressions.conf import DEFAULT_IGNORE_USER_AGENTS, conf
from impressions.middleware import VisitorCookieMiddleware

factory = RequestFactory()


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, None, "10.0.0.5"),
        (0, "198.51.100.7", "10.0.0.5"),  # no proxy trusted: the header is the client's words
        (1, None, "10.0.0.5"),  # reached the site without the proxy: only the peer is known
        (1, "198.51.100.7", "198.51.100.7"),
        (1, "1.2.3.4, 198.51.100.7", "198.51.100.7"),  # the forged left part is never read
        (1, " 1.2.3.4 ,, 198.51.100.7 ", "198.51.100.7"),
        (2, "1.2.3.4, 198.51.100.7, 172.16.0.2", "198.51.100.7"),  # CDN, then the balancer
        (2, "198.51.100.7", "198.51.100.7"),  # fewer entries than proxies: the leftmost
        (3, "", "10.0.0.5"),
        # Some proxies (Azure Application Gateway, IIS ARR) append the port too: a client changes
        # it with every connection, so it is no part of the address.
        (1, "1.2.3.4:80, 198.51.100.7:51234", "198.51.100.7"),
        (1, "[2001:db8::7]:51234", "2001:db8::7"),
        (1, "[2001:db8::7]", "2001:db8::7"),
        (1, "2001:db8::7", "2001:db8::7"),  # colons of IPv6 itself, no port
        (1, "::ffff:198.51.100.7", "::ffff:198.51.100.7"),
        (1, "not-an-address", "not-an-address"),  # kept as it is (a misconfigured proxy)
        (1, "[2001:db8::7", "[2001:db8::7"),
    ],
)
def test_client_ip_skips_exactly_the_trusted_proxies(proxies, forwarded, expected):
    headers = {} if forwarded is None else {"HTTP_X_FORWARDED_FOR": forwarded}
    request = factory.get("/", REMOTE_ADDR="10.0.0.5", **headers)
    with override_settings(IMPRESSIONS_TRUSTED_PROXIES=proxies):
        assert viewers.client_ip(request) == expected


BOTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.69 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
    "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
    "Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
    "CCBot/2.0 (https://commoncrawl.org/faq/)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
    "Mozilla/5.0 (compatible; PetalBot;+https://webmaster.petalsearch.com/site/petalbot)",
    "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 (compatible; Bytespider; spider-feedback@bytedance.com)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "meta-externalagent/1.1 (+https://developers.facebook.com/docs/sharing/webmasters/crawler)",
    "Twitterbot/1.0",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "TelegramBot (like TwitterBot)",
    "WhatsApp/2.23.20.0",
    "Pinterestbot/1.0",
    "Pinterest/0.2 (+https://www.pinterest.com/bot.html)",
    # Google's Search Console and its general crawler; fediverse and Bluesky link previews (each
    # Mastodon server that sees a link fetches it); uptime checks and load balancers' probes.
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.69 Mobile Safari/537.36 (compatible; Google-InspectionTool/1.0;)",
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.69 Mobile Safari/537.36 (compatible; GoogleOther)",
    "Mastodon/4.2.10 (http.rb/5.2.0; +https://mastodon.social/)",
    "Mozilla/5.0 (compatible; Bluesky Cardyb/1.1; +mailto:support@bsky.app)",
    "Iframely/1.3.1 (+https://iframely.com/docs/about)",
    "Datadog/Synthetics",
    "ELB-HealthChecker/2.0",
    "kube-probe/1.29",
    "GoogleHC/1.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
    "Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
    "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; PerplexityBot/1.0; +https://perplexity.ai/perplexitybot)",
]
BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 10; CUBOT_X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    # In-app browsers of Pinterest and of Baidu's app: people reading the page.
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [Pinterest/iOS]",
    "Mozilla/5.0 (Linux; Android 13; Pixel 7; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.144 Mobile Safari/537.36 [Pinterest/Android]",
    "Mozilla/5.0 (Linux; Android 10; V1990A; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/76.0.3809.89 Mobile Safari/537.36 T7/12.10 SP-engine/2.28.0 baiduboxapp/12.10.0.10 (Baidu; P1 10) NABar/1.0",
    "CasusultApp/3.2 okhttp/4.12.0",
    "python-httpx/0.28.1",
    "",
]


@pytest.mark.parametrize("user_agent", BOTS)
def test_the_default_pattern_catches_the_big_crawlers_and_previews(user_agent):
    assert viewers.is_ignored_user_agent(user_agent)


@pytest.mark.parametrize("user_agent", BROWSERS)
def test_the_default_pattern_leaves_browsers_and_apps_alone(user_agent):
    assert not viewers.is_ignored_user_agent(user_agent)


def test_an_empty_pattern_ignores_nobody():
    with override_settings(IMPRESSIONS_IGNORE_USER_AGENTS=""):
        assert not viewers.is_ignored_user_agent(BOTS[0])
    with override_settings(IMPRESSIONS_IGNORE_USER_AGENTS=None):
        assert conf.IGNORE_USER_AGENTS == DEFAULT_IGNORE_USER_AGENTS


@pytest.mark.parametrize(
    ("headers", "prefetch"),
    [
        ({"HTTP_SEC_PURPOSE": "prefetch"}, True),
        ({"HTTP_SEC_PURPOSE": "prefetch;prerender"}, True),
        ({"HTTP_PURPOSE": "Prefetch"}, True),
        ({"HTTP_X_MOZ": "prefetch"}, True),
        ({"HTTP_X_PURPOSE": "preview"}, True),
        ({}, False),
        ({"HTTP_SEC_FETCH_MODE": "navigate"}, False),
        ({"HTTP_PURPOSE": ""}, False),
    ],
)
def test_prefetch_headers(headers, prefetch):
    assert viewers.is_prefetch(factory.get("/", **headers)) is prefetch


def test_a_visitor_cookie_reads_back_what_it_was_made_with():
    digest = "0123456789abcdef" * 2
    cookie = viewers.make_visitor_cookie("20991128", digest)
    request = factory.get("/")
    request.COOKIES["visitor"] = cookie
    visitor_id, day, arrival = viewers.read_visitor_cookie(request)
    assert (day, arrival) == ("20991128", digest)
    assert len(visitor_id) == 16
    assert cookie.startswith(visitor_id)


def test_two_visitor_cookies_never_share_an_id():
    ids = {viewers.make_visitor_cookie("20991128", "0" * 32).split(".")[0] for _ in range(1000)}
    assert len(ids) == 1000


@pytest.mark.parametrize(
    "cookie",
    [
        "",
        "garbage",
        "a" * 201,
        signing.Signer(salt=viewers.COOKIE_SIGNING_SALT).sign("not.the.format"),
        signing.Signer(salt=viewers.COOKIE_SIGNING_SALT).sign(f"{'A' * 16}.2099112.{'0' * 32}"),
        signing.Signer(salt="other").sign(f"{'A' * 16}.20991128.{'0' * 32}"),
    ],
)
def test_anything_but_a_cookie_we_made_reads_as_none(cookie):
    request = factory.get("/")
    request.COOKIES["visitor"] = cookie
    assert viewers.read_visitor_cookie(request) is None


def test_a_cookie_edited_by_its_owner_reads_as_none():
    cookie = viewers.make_visitor_cookie("20991128", "0" * 32)
    request = factory.get("/")
    request.COOKIES["visitor"] = cookie.replace(".20991128.", ".20991127.")
    assert viewers.read_visitor_cookie(request) is None


class LazyUser:
    """Stands for request.user: counts how often the session had to be resolved."""

    def __init__(self, pk):
        self.resolved, self._pk = 0, pk

    @property
    def is_authenticated(self):
        self.resolved += 1
        return self._pk is not None

    @property
    def pk(self):
        return self._pk


@pytest.fixture(autouse=True)
def session_user(monkeypatch):
    """The session's user, as Django's AuthenticationMiddleware resolves it: the request's
    stand-in (session_users remembers only that middleware's lazy user)."""
    monkeypatch.setattr(auth_middleware, "get_user", lambda request: request.stand_in)


def session_request(session_key, user):
    request = factory.get("/")
    request.COOKIES["sessionid"] = session_key
    request.session, request.stand_in = {}, user
    auth_middleware.AuthenticationMiddleware(lambda request: None).process_request(request)
    return request


@pytest.fixture
def clock(monkeypatch):
    """session_users' clock, from an empty memory: [monotonic seconds], moved by the test."""
    session_users.forget()
    now = [1000.0]
    monkeypatch.setattr(session_users.time, "monotonic", lambda: now[0])
    return now


def test_a_session_is_resolved_once_per_ttl_then_again(clock):
    user = LazyUser(7)
    assert session_users.user_id(session_request("key-a", user)) == 7
    clock[0] += session_users.TTL_SECONDS - 1
    assert session_users.user_id(session_request("key-a", LazyUser(8))) == 7  # remembered
    assert user.resolved == 1
    clock[0] += 2
    assert session_users.user_id(session_request("key-a", LazyUser(None))) is None  # resolved again


def test_the_memory_is_bounded_and_holds_no_session_key(monkeypatch):
    session_users.forget()
    monkeypatch.setattr(session_users, "MAX_ENTRIES", 3)
    for number in range(5):
        session_users.user_id(session_request(f"key-{number}", LazyUser(number)))
    assert len(session_users._entries) == 3
    assert not any(b"key-" in digest for digest in session_users._entries)
    user = LazyUser(0)
    assert session_users.user_id(session_request("key-0", user)) == 0
    assert user.resolved == 1  # the oldest was evicted: resolved again


def test_a_session_s_user_is_forgotten_once_its_ttl_is_over(clock):
    # The user id behind a session stayed in the process until 10,000 newer sessions came: on a
    # quiet process, days after the user (or the account) left.
    session_users.user_id(session_request("key-a", LazyUser(42)))
    clock[0] += 1
    session_users.user_id(session_request("key-b", LazyUser(7)))
    clock[0] += session_users.TTL_SECONDS - 0.5
    session_users.user_id(session_request("key-c", LazyUser(8)))
    assert sorted(entry[0] for entry in session_users._entries.values()) == [7, 8]
    clock[0] += 1
    session_users.user_id(session_request("key-d", LazyUser(9)))
    assert [entry[0] for entry in session_users._entries.values()] == [8, 9]


def test_a_lapsed_session_s_user_goes_at_the_next_view_of_any_viewer(clock):
    # security.md: a session's user id goes at the process's next call once its five minutes
    # are over. It went only when a new session was resolved: a process then serving anonymous
    # viewers, or sessions it knew, kept a logged-in user's id for as long as that lasted.
    session_users.user_id(session_request("key-a", LazyUser(42)))
    clock[0] += 10
    session_users.user_id(session_request("key-b", LazyUser(7)))
    clock[0] += session_users.TTL_SECONDS - 5
    known = session_request("key-b", LazyUser(7))
    assert session_users.user_id(known) == 7 and known.stand_in.resolved == 0  # a hit
    assert [entry[0] for entry in session_users._entries.values()] == [7]
    clock[0] += 10
    anonymous = factory.get("/")
    anonymous.user = LazyUser(None)
    assert session_users.user_id(anonymous) is None
    assert not session_users._entries


def test_without_a_session_cookie_the_user_at_hand_is_used():
    request = factory.get("/")
    request.user = LazyUser(3)
    assert session_users.user_id(request) == 3


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IMPRESSIONS_ENABLED", "no"),
        ("IMPRESSIONS_IGNORE_USER_AGENTS", "bot(("),
        ("IMPRESSIONS_IGNORE_USER_AGENTS", 5),
        ("IMPRESSIONS_TRUSTED_PROXIES", -1),
        ("IMPRESSIONS_TRUSTED_PROXIES", "1"),
        ("IMPRESSIONS_VISITOR_COOKIE_NAME", "visitor id"),
        ("IMPRESSIONS_VISITOR_COOKIE_NAME", ""),
        ("IMPRESSIONS_VISITOR_COOKIE_AGE", 0),
        ("IMPRESSIONS_VISITOR_COOKIE_AGE", 10**9),
        ("IMPRESSIONS_VISITOR_COOKIE_SECURE", "yes"),
    ],
)
def test_bad_values_of_the_viewer_settings_fail_naming_them(name, value):
    with override_settings(**{name: value}):
        [error] = check_settings()
    assert (error.id, error.obj) == ("impressions.E005", name)


def test_the_cookie_middleware_check_warns_only_when_anonymous_viewers_are_counted(settings):
    middleware = [m for m in settings.MIDDLEWARE if "VisitorCookie" not in m]
    with override_settings(MIDDLEWARE=middleware):
        assert [w.id for w in check_visitor_cookie_middleware()] == ["impressions.W003"]
        with override_settings(IMPRESSIONS_COUNT_ANONYMOUS=False):
            assert check_visitor_cookie_middleware() == []
        with override_settings(IMPRESSIONS_ENABLED=False):
            assert check_visitor_cookie_middleware() == []
    assert check_visitor_cookie_middleware() == []


@override_settings(DEBUG=True, MIDDLEWARE=["impressions.middleware.VisitorCookieMiddleware"])
def test_the_cookie_middleware_keeps_an_async_stack_async(caplog):
    """Under ASGI a sync-only middleware makes Django wrap everything inside it in async_to_sync
    (the async view then runs through a thread hop per request); Django logs each adaptation."""
    caplog.set_level(logging.DEBUG, logger="django.request")
    ASGIHandler().load_middleware(is_async=True)
    assert [
        r.getMessage() for r in caplog.records if "VisitorCookieMiddleware" in r.getMessage()
    ] == []

    async def view(request):
        setattr(request, viewers.NEW_VISITOR_COOKIE, "made-by-record")
        return HttpResponse("served")

    middleware = VisitorCookieMiddleware(view)
    assert iscoroutinefunction(middleware)
    response = async_to_sync(middleware)(RequestFactory().get("/"))
    assert response.cookies[conf.VISITOR_COOKIE_NAME].value == "made-by-record"
    assert response.cookies[conf.VISITOR_COOKIE_NAME]["httponly"] is True
