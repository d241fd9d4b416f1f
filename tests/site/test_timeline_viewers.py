"""Every kind of viewer on the timeline: no session made, no database row written, bots in a metric."""

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from prometheus_client import REGISTRY

from impressions import salt
from impressions.recorder import get_client, pending_counts
from impressions.reloads import reloads
from tests.factories import make_posts, make_user

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


@pytest.fixture
def buffer():
    """This test session's Redis database for the impression buffer, emptied before and after."""
    client = get_client(1.0)
    client.flushdb()
    reloads.clear()  # the process no longer knows what the emptied Redis de-duplicates
    salt.forget()
    yield client
    client.flushdb()
    reloads.clear()


def rows_written():
    """Rows inserted, updated and deleted in this database so far, as PostgreSQL counts them.

    PostgreSQL publishes a backend's counts when it goes idle, at most once a second unless forced:
    the requests ran on this test's own connection, so force it before reading.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables"
        )
        tables = cursor.fetchone()[0]
        cursor.execute(
            "SELECT tup_inserted + tup_updated + tup_deleted FROM pg_stat_database"
            " WHERE datname = current_database()"
        )
        database = cursor.fetchone()[0]
    return tables, database


def browse_as_every_kind_of_viewer():
    """Page 1 and page 2 (by cursor), JSON and HTML, for each kind of viewer; returns responses."""
    logged_in = Client()
    logged_in.force_login(make_user("reader"))
    with_cookie = Client()
    kinds = [
        (logged_in, {"HTTP_USER_AGENT": CHROME}),
        (with_cookie, {"HTTP_USER_AGENT": CHROME}),  # gets its cookie on the first request
        (None, {"HTTP_USER_AGENT": CHROME}),  # a new client each time: keeps no cookies
        (None, {"HTTP_USER_AGENT": GOOGLEBOT}),
        (None, {"HTTP_USER_AGENT": CHROME, "HTTP_SEC_PURPOSE": "prefetch"}),
    ]
    before = rows_written()
    responses = []
    for client, headers in kinds:
        for _ in range(2):  # the second round is a reload
            first = (client or Client()).get("/api/timeline/", **headers)
            responses.append(first)
            responses.append((client or Client()).get(first.json()["next"], **headers))
            responses.append((client or Client()).get("/", **headers))
    return before, responses


@pytest.mark.django_db(transaction=True)
def test_timeline_requests_write_no_database_row_for_any_viewer(buffer):
    posts = make_posts(45)
    before, responses = browse_as_every_kind_of_viewer()
    assert {response.status_code for response in responses} == {200}
    assert rows_written() == before
    counted = pending_counts([post.id for post in posts])
    assert sum(counted.values()) > 0  # the views really recorded, in Redis


@pytest.mark.django_db(transaction=True)
def test_the_row_counters_do_see_a_write(buffer):
    """The control for the test above: one session saved moves both counters."""
    before = rows_written()
    SessionStore().save(must_create=True)
    tables, database = rows_written()
    assert tables > before[0] and database > before[1]


@pytest.mark.django_db
def test_anonymous_timeline_requests_make_no_session(buffer):
    make_posts(25)
    cookie_jar = Client()
    for client in (cookie_jar, cookie_jar, Client(), Client()):
        for path in ("/", "/api/timeline/"):
            response = client.get(path, HTTP_USER_AGENT=CHROME)
            assert response.status_code == 200
            assert "sessionid" not in response.cookies
    assert "visitor" in cookie_jar.cookies
    assert Session.objects.count() == 0


@pytest.mark.django_db
def test_a_logged_in_viewer_makes_no_further_session(buffer):
    make_posts(3)
    client = Client()
    client.force_login(make_user("reader"))
    sessions = list(Session.objects.values_list("session_key", "expire_date"))
    for path in ("/", "/api/timeline/", "/", "/api/timeline/"):
        assert client.get(path).status_code == 200
    assert list(Session.objects.values_list("session_key", "expire_date")) == sessions


def ignored(reason):
    return REGISTRY.get_sample_value("impressions_ignored_total", {"reason": reason}) or 0.0


@pytest.mark.django_db
def test_bots_and_prefetches_are_counted_in_the_ignored_metric_only(buffer):
    posts = make_posts(5)
    bots, prefetches = ignored("bot"), ignored("prefetch")
    Client().get("/api/timeline/", HTTP_USER_AGENT=GOOGLEBOT)
    Client().get("/", HTTP_USER_AGENT=CHROME, HTTP_SEC_PURPOSE="prefetch")
    Client().get("/", HTTP_USER_AGENT=CHROME, HTTP_PURPOSE="prefetch")
    assert ignored("bot") == bots + 5
    assert ignored("prefetch") == prefetches + 10
    assert set(pending_counts([post.id for post in posts]).values()) == {0}


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/", "/api/timeline/"])
def test_only_a_get_is_a_view_head_is_answered_uncounted_other_methods_are_405(buffer, path):
    posts = make_posts(3)
    client = Client()
    methods = ignored("method")
    head = client.head(path, HTTP_USER_AGENT=CHROME)
    assert head.status_code == 200
    assert ignored("method") == methods + 3  # the three posts the HEAD did not show anybody
    for method in ("options", "trace", "post", "put", "delete"):
        response = getattr(client, method)(path, HTTP_USER_AGENT=CHROME)
        assert response.status_code == 405, method
        assert response["Allow"] == "GET, HEAD"
    assert set(pending_counts([post.id for post in posts]).values()) == {0}
    client.get(path, HTTP_USER_AGENT=CHROME)  # the control: a GET counts
    assert set(pending_counts([post.id for post in posts]).values()) == {1}
