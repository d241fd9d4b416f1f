"""Invalid traffic on the real timeline and Redis: hourly budgets of new anonymous viewers per IP
address and of counted impressions per viewer (issue 17, item 6)."""

import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from django.test import Client, RequestFactory, override_settings
from prometheus_client import REGISTRY
from redis.cluster import RedisCluster

import impressions
from impressions import budgets, salt
from impressions.flush import flush_pending
from impressions.recorder import lost, pending_counts, record_impressions
from impressions.signals import impressions_ignored
from impressions.viewers import NEW_VISITOR_COOKIE
from tests.factories import make_posts, make_user

from .support import reset_loss_counter

pytestmark = pytest.mark.django_db

ADDRESS = "203.0.113.7"
COOKIE = "visitor"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)


def rate_ignored():
    return REGISTRY.get_sample_value("impressions_ignored_total", {"reason": "rate"}) or 0.0


@pytest.fixture
def posts(buffer):
    salt.forget()  # the buffer was emptied: a salt this process remembers is gone from Redis
    return [post.id for post in make_posts(3)]


def cookie_less_view(address=ADDRESS, user_agent=CHROME):
    """One timeline request of a client that keeps no cookies: the visitor cookie set, or None."""
    response = Client().get("/api/timeline/", REMOTE_ADDR=address, HTTP_USER_AGENT=user_agent)
    assert response.status_code == 200
    cookie = response.cookies.get(COOKIE)
    return cookie.value if cookie is not None else None


@override_settings(IMPRESSIONS_IP_NEW_VIEWERS_PER_HOUR=5)
def test_rotating_user_agents_from_one_address_stop_counting_at_the_budget(posts):
    before = rate_ignored()
    cookies = [cookie_less_view(user_agent=f"{CHROME} rotation/{n}") for n in range(8)]

    assert all(cookies[:5]) and cookies[5:] == [None, None, None]  # no new viewer: no cookie
    assert pending_counts(posts) == dict.fromkeys(posts, 5)
    assert rate_ignored() == before + 3 * len(posts)
    # Another address has a budget of its own.
    assert cookie_less_view(address="203.0.113.8", user_agent=f"{CHROME} rotation/9")
    assert pending_counts(posts) == dict.fromkeys(posts, 6)


@override_settings(IMPRESSIONS_IP_NEW_VIEWERS_PER_HOUR=5)
def test_harvesting_cookies_from_one_address_stops_at_the_budget(posts):
    """One address and User-Agent asking again and again without cookies: each cookie would be a
    viewer of its own from tomorrow on."""
    before = rate_ignored()
    harvested = [cookie_less_view() for _ in range(9)]

    assert len(set(filter(None, harvested))) == 5
    assert harvested[5:] == [None] * 4
    assert rate_ignored() == before + 4 * len(posts)
    assert pending_counts(posts) == dict.fromkeys(posts, 1)  # today one digest: one viewer
    # A visitor who kept its cookie is no new viewer: it still counts, past the budget.
    keeper = Client(REMOTE_ADDR=ADDRESS, HTTP_USER_AGENT=CHROME)
    keeper.cookies[COOKIE] = harvested[0]
    assert keeper.get("/api/timeline/").status_code == 200
    assert rate_ignored() == before + 4 * len(posts)


def test_an_ipv6_client_cannot_widen_its_budget_by_changing_addresses_in_its_64(posts):
    with override_settings(IMPRESSIONS_IP_NEW_VIEWERS_PER_HOUR=2):
        cookies = [
            cookie_less_view(address=f"2001:db8:7:9::{n:x}", user_agent=f"{CHROME} v6/{n}")
            for n in range(1, 5)
        ]
        other = cookie_less_view(address="2001:db8:7:a::1", user_agent=f"{CHROME} v6/other")
    assert [bool(cookie) for cookie in cookies] == [True, True, False, False]
    assert other is not None


def test_the_budget_keys_hold_no_address_and_expire(posts, buffer):
    cookie_less_view()
    record_impressions("u:1", posts)
    per_address, per_viewer = scan(buffer, "*:new-viewers:*"), scan(buffer, "*:rate:*")
    assert (len(per_address), len(per_viewer)) == (1, 2)  # the cookie-less viewer's and u:1's
    assert all(ADDRESS not in key for key in per_address + per_viewer)
    assert all(0 < buffer.ttl(key) <= budgets.KEY_TTL for key in per_address + per_viewer)


def scan(client, pattern):
    if isinstance(client, RedisCluster):
        found = client.scan_iter(match=pattern, target_nodes=RedisCluster.PRIMARIES)
    else:
        found = client.scan_iter(match=pattern, count=1000)
    return [key.decode() for key in found]


@override_settings(
    IMPRESSIONS_VIEWER_IMPRESSIONS_PER_HOUR=50, IMPRESSIONS_IP_NEW_VIEWERS_PER_HOUR=1
)
def test_a_logged_in_user_walking_the_timeline_stops_counting_at_its_budget(buffer):
    salt.forget()
    make_posts(100)  # five pages of 20
    cookie_less_view()  # the address's only new viewer this hour
    assert cookie_less_view(user_agent="another browser") is None
    walker = Client(REMOTE_ADDR=ADDRESS, HTTP_USER_AGENT=CHROME)
    walker.force_login(make_user("walker"))
    before = rate_ignored()

    url, served = "/api/timeline/", []
    while url:
        page = walker.get(url).json()  # not (a): a user is no new anonymous viewer
        served += [post["id"] for post in page["results"]]
        last, url = url, page["next"]
    walker.get(last)  # a reload of a page held back: reported again, not cached

    assert sum(pending_counts(served).values()) == 1 * 20 + 50  # the cookie-less view, then 50
    assert rate_ignored() == before + 50 + 20
    flush_pending()
    assert sum(pending_counts(served).values()) == 0


def test_the_viewer_budget_holds_exactly_under_concurrent_calls(buffer):
    ids = [post.id for post in make_posts(200)]

    def view(seed):
        rng = random.Random(seed)
        return [record_impressions("u:hammer", rng.sample(ids, 20)) for _ in range(10)]

    patient = override_settings(
        IMPRESSIONS_VIEWER_IMPRESSIONS_PER_HOUR=77, IMPRESSIONS_REDIS_TIMEOUT=10.0
    )
    with patient, ThreadPoolExecutor(4) as pool:
        results = [result for batch in pool.map(view, range(4)) for result in batch]
    assert sum(r.counted for r in results) == 77
    assert sum(r.lost for r in results) == 0
    assert sum(pending_counts(ids).values()) == 77
    assert impressions.buffer_status().pending_impressions == 77


def test_the_viewer_budget_counts_per_clock_hour(buffer):
    ids = [post.id for post in make_posts(30)]
    hour = 3600 * 490_000  # the start of a clock hour
    with override_settings(IMPRESSIONS_VIEWER_IMPRESSIONS_PER_HOUR=10, IMPRESSIONS_DEDUP_WINDOW=0):
        first = record_impressions("u:1", ids[:15], now=hour + 100)
        still = record_impressions("u:1", ids[15:], now=hour + 3599)
        next_hour = record_impressions("u:1", ids[15:], now=hour + 3600)
    assert (first.counted, first.limited) == (10, 5)
    assert (still.counted, still.limited) == (0, 15)
    assert (next_hour.counted, next_hour.limited) == (10, 5)


def test_without_the_cookie_middleware_a_known_digest_costs_nothing_again(posts):
    middleware = [m for m in settings.MIDDLEWARE if not m.endswith("VisitorCookieMiddleware")]
    with override_settings(MIDDLEWARE=middleware, IMPRESSIONS_IP_NEW_VIEWERS_PER_HOUR=2):
        before = rate_ignored()
        for _ in range(5):  # one browser that keeps no cookies: one viewer, reloading
            assert cookie_less_view() is None
        cookie_less_view(user_agent="a second browser")
        cookie_less_view(user_agent="a third browser")  # beyond the budget
        assert rate_ignored() == before + len(posts)
        assert pending_counts(posts) == dict.fromkeys(posts, 2)


def test_the_budgets_can_be_turned_off(posts):
    with override_settings(
        IMPRESSIONS_IP_NEW_VIEWERS_PER_HOUR=0,
        IMPRESSIONS_VIEWER_IMPRESSIONS_PER_HOUR=0,
        IMPRESSIONS_REDIS_TIMEOUT=10.0,  # one call of 12,000 posts
    ):
        cookies = [cookie_less_view(user_agent=f"{CHROME} n/{n}") for n in range(30)]
        assert all(cookies)
        many = range(10**9, 10**9 + 12_000)  # ids of no post here
        assert record_impressions("u:big", many).counted == 12_000
    assert pending_counts(posts) == dict.fromkeys(posts, 30)


def test_an_unreachable_redis_during_the_budget_check_serves_the_page_and_grants_nothing(
    private_redis,
):
    make_posts(2)
    with override_settings(IMPRESSIONS_REDIS_URL=private_redis.url):
        reset_loss_counter()
        salt.forget()
        assert cookie_less_view(user_agent="first") is not None  # the day's salt, now cached
        private_redis.stop()
        assert cookie_less_view(user_agent="second") is None
    assert (lost.requests, lost.impressions) == (1, 2)


# A normal office behind one NAT address, with the default budgets (docs/operations/security.md):
# 500 people with 2 browsers each, all arriving without a cookie in the same hour (the worst hour:
# the site's first day), browsers of a few builds (same User-Agent, same digest), a few browsers
# that refuse cookies, and a heavy reader: a page every 10 s for an hour.
PEOPLE, BROWSERS_EACH, PAGES_EACH, REFUSERS, REFUSER_PAGES = 500, 2, 3, 5, 60
OFFICE = "198.51.100.20"


def test_a_normal_office_behind_one_address_is_never_limited(standalone_buffer):
    salt.forget()
    posts = make_posts(1000)
    user_agents = [f"{CHROME} build/{n}" for n in range(12)]
    rng = random.Random(11)
    refused = []

    def on_ignored(reason, **_):
        refused.append(reason)

    impressions_ignored.connect(on_ignored)
    try:
        # Patient Redis calls: this test is about the budgets, not a loaded machine's timeouts.
        with override_settings(IMPRESSIONS_REDIS_TIMEOUT=10.0):
            for _ in range(PEOPLE * BROWSERS_EACH):
                user_agent, cookie = rng.choice(user_agents), None
                for _ in range(PAGES_EACH):
                    request = office_request(user_agent, cookie)
                    result = impressions.record(request, random_page(rng, posts))
                    assert result is not None and result.lost == 0
                    cookie = cookie or getattr(request, NEW_VISITOR_COOKIE)  # kept by the browser
            for refuser in range(REFUSERS):
                for _ in range(REFUSER_PAGES):
                    request = office_request(f"{CHROME} refuses cookies/{refuser}", None)
                    assert impressions.record(request, random_page(rng, posts)) is not None
            # The heavy reader walks the timeline, a page every 10 s: a post comes back after
            # 50 pages, out of the de-duplication window, so every impression counts.
            ids = [post.id for post in posts]
            start = 3600 * 490_001
            reader = [
                record_impressions("u:reader", ids[20 * n % 1000 :][:20], now=start + 10 * n)
                for n in range(360)
            ]
    finally:
        impressions_ignored.disconnect(on_ignored)
    assert "rate" not in refused
    assert sum(result.limited for result in reader) == 0
    assert sum(result.counted for result in reader) == 360 * 20


def random_page(rng, posts):
    first = rng.randrange(0, len(posts) - 20)
    return posts[first : first + 20]


def office_request(user_agent, cookie):
    request = RequestFactory().get("/", REMOTE_ADDR=OFFICE, HTTP_USER_AGENT=user_agent)
    if cookie:
        request.COOKIES[COOKIE] = cookie
    return request


def test_a_budget_check_is_atomic_across_threads_of_one_address(posts):
    day = salt.utc_day()
    with override_settings(IMPRESSIONS_IP_NEW_VIEWERS_PER_HOUR=7), ThreadPoolExecutor(4) as pool:
        granted = list(
            pool.map(lambda n: budgets.grant_new_viewer(ADDRESS, day, f"{n:032x}", True), range(40))
        )
    assert granted.count(True) == 7
