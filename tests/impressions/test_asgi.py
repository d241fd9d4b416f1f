"""Recording under Django's own ASGI handler, in process, with requests open at once."""

import asyncio
import threading
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponse
from django.test import override_settings
from django.urls import path

import impressions
from impressions.recorder import pending_counts

from .support import with_option

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
OBJECTS = [SimpleNamespace(pk=1), SimpleNamespace(pk=2)]
POOL = 3  # the pool's max_connections in these tests
OPEN_AT_ONCE = 2 * POOL

# What the views below recorded, and the event that lets them answer.
results = []
release = threading.Event()


def sync_page(request):
    results.append(impressions.record(request, OBJECTS))
    release.wait(10)
    return HttpResponse("served")


async def async_page(request):
    results.append(await impressions.arecord(request, OBJECTS))
    # As an async view awaiting something slow (an API, a stream) after recording.
    while not release.is_set():
        await asyncio.sleep(0.005)
    return HttpResponse("served")


class WrappedRequest:
    """As Django REST framework's Request: the HttpRequest in `_request`, its attributes through."""

    def __init__(self, request):
        self._request = request

    def __getattr__(self, name):
        return getattr(self._request, name)


def wrapped_page(request):
    results.append(impressions.record(WrappedRequest(request), OBJECTS))
    release.wait(10)
    return HttpResponse("served")


urlpatterns = [
    path("sync/", sync_page),
    path("async/", async_page),
    path("wrapped/", wrapped_page),
]


@pytest.fixture
def views():
    results.clear()
    release.clear()
    with override_settings(
        ROOT_URLCONF=__name__, MIDDLEWARE=["impressions.middleware.VisitorCookieMiddleware"]
    ):
        yield
    release.set()


async def get(app, url, user_agent):
    """The status of a GET of `url` from Django's ASGI application, as an ASGI server calls it."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": url,
        "raw_path": url.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"user-agent", user_agent.encode())],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    body_sent = False
    statuses = []

    async def receive():
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Future()  # the client stays connected

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


async def open_in_turn(url, count):
    """`count` requests, each sent once the one before has recorded, all open until the last
    has: their recordings never overlap, their requests all do."""
    app = ASGIHandler()
    requests = []
    for number in range(count):
        requests.append(asyncio.create_task(get(app, url, f"{CHROME} {number}")))
        for _ in range(1000):
            if len(results) > number:
                break
            await asyncio.sleep(0.005)
    release.set()
    return await asyncio.gather(*requests)


@pytest.mark.parametrize("url", ["/sync/", "/async/", "/wrapped/"])
def test_requests_open_at_once_beyond_the_pool_all_count(buffer, views, url):
    """Django runs each ASGI request's sync work in a thread that ends with the request; that
    thread's kept connection stayed taken while the request was open, so with 6 requests open
    and a pool of 3 (100 by default) the last 3 lost their impressions (MaxConnectionsError)."""
    redis_url = with_option(settings.IMPRESSIONS_REDIS_URL, f"max_connections={POOL}")
    with override_settings(IMPRESSIONS_REDIS_URL=redis_url):
        # Its own event loop, as a server runs: under async_to_sync all sync work would go to
        # this test's thread instead of a thread per request.
        statuses = asyncio.run(open_in_turn(url, OPEN_AT_ONCE))
        assert statuses == [200] * OPEN_AT_ONCE
        assert [(result.counted, result.lost) for result in results] == [(2, 0)] * OPEN_AT_ONCE
        assert pending_counts([1, 2]) == {1: OPEN_AT_ONCE, 2: OPEN_AT_ONCE}
