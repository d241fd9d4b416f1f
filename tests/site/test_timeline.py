"""The timeline pages and API: newest first, cursor paging that holds still while posts arrive."""

from datetime import timedelta
from urllib.parse import unquote

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from casusult.models import Post
from casusult.paging import Position, encode_cursor
from tests.factories import make_posts, make_user

pytestmark = pytest.mark.django_db


def flat(pages):
    return [post_id for page in pages for post_id in page]


def walk(client, url="/api/timeline/", between_pages=None):
    """Follow `next` from `url` to the end; returns the ids served, page by page."""
    pages = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        pages.append([item["id"] for item in body["results"]])
        url = body["next"]
        if url and between_pages:
            between_pages(len(pages))
    return pages


def test_api_returns_newest_first_with_documented_shape(client):
    posts = make_posts(3)
    response = client.get("/api/timeline/")
    assert response.status_code == 200
    body = response.json()
    assert [item["id"] for item in body["results"]] == [p.id for p in reversed(posts)]
    first = body["results"][0]
    assert set(first) == {"id", "author", "body", "created_at", "impressions"}
    assert first["author"] == "author"
    assert first["body"] == "post 2"
    assert first["impressions"] == 0
    assert body["next"] is None


def test_api_pages_by_twenty_and_the_last_page_has_no_next(client):
    posts = make_posts(45)
    pages = walk(client)
    assert [len(page) for page in pages] == [20, 20, 5]
    assert flat(pages) == [p.id for p in reversed(posts)]


def test_a_full_last_page_has_no_next_either(client):
    make_posts(40)
    assert [len(page) for page in walk(client)] == [20, 20]


def test_next_is_an_absolute_url_with_an_opaque_cursor(client):
    make_posts(21)
    next_url = client.get("/api/timeline/").json()["next"]
    assert next_url.startswith("http://testserver/api/timeline/?cursor=")
    assert "page=" not in next_url


def test_equal_timestamps_page_by_id_without_duplicates_or_gaps(client):
    author = make_user("same-time")
    moment = timezone.now() - timedelta(hours=1)
    posts = Post.objects.bulk_create(
        Post(author=author, body=str(i), created_at=moment) for i in range(45)
    )
    pages = walk(client)
    assert flat(pages) == sorted((p.id for p in posts), reverse=True)


def test_posts_added_during_a_walk_neither_repeat_nor_shift_the_pages(client):
    """New posts (newer, and ties at the exact time of a page's last post) do not move a cursor."""
    author = make_user("writer")
    start = timezone.now() - timedelta(days=1)
    # Posts share timestamps in threes, so the end of page 1 splits a tie.
    original = Post.objects.bulk_create(
        Post(author=author, body=f"old {i}", created_at=start + timedelta(seconds=i // 3))
        for i in range(70)
    )
    added = []

    def write_more(pages_served):
        last_served = Post.objects.order_by("-created_at", "-id")[pages_served * 20 - 1]
        added.extend(
            Post.objects.bulk_create(
                [
                    Post(author=author, body="new", created_at=timezone.now()),
                    # Same time as the page's last post but a higher id: it sorts before the
                    # cursor, among the posts already served, so it must not show up later.
                    Post(author=author, body="tie", created_at=last_served.created_at),
                ]
            )
        )

    pages = walk(client, between_pages=write_more)
    served = flat(pages)
    assert len(served) == len(set(served))
    assert served == [
        p.id for p in sorted(original, key=lambda p: (p.created_at, p.id), reverse=True)
    ]
    assert added and not set(served) & {p.id for p in added}


def test_a_deleted_cursor_post_still_pages_on(client):
    posts = make_posts(30)
    next_url = client.get("/api/timeline/").json()["next"]
    Post.objects.filter(id=posts[10].id).delete()  # the last post of page 1
    rest = client.get(next_url).json()["results"]
    assert [item["id"] for item in rest] == [p.id for p in reversed(posts[:10])]


def test_the_page_query_runs_no_count_and_no_offset(client):
    make_posts(25)
    next_url = client.get("/api/timeline/").json()["next"]
    with CaptureQueriesContext(connection) as queries:
        assert client.get(next_url).status_code == 200
    [query] = [q["sql"].upper() for q in queries.captured_queries]  # the page, nothing else
    assert "COUNT(" not in query and "OFFSET" not in query
    assert query.endswith("LIMIT 21")


def test_page_one_is_still_served(client):
    posts = make_posts(3)
    body = client.get("/api/timeline/", {"page": "1"}).json()
    assert [item["id"] for item in body["results"]] == [p.id for p in reversed(posts)]


@pytest.mark.parametrize("page", ["2", "0", "-1", "abc", "1.5", "99", "", "١"])  # noqa: RUF001
def test_numbered_pages_are_retired_with_a_400_that_points_to_the_cursor(client, page):
    make_posts(3)
    response = client.get("/api/timeline/", {"page": page})
    assert response.status_code == 400
    error = response.json()["error"]
    assert "page" in error and "cursor" in error


def tampered(cursor):
    payload, signature = cursor.rsplit(":", 1)
    return f"{payload}:{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "garbage",
        "x" * 5000,
        "W10:abc",
        "%00",
        "\u2603",
        "cursor:with:colons",
        "eyJhIjoxfQ",
    ],
)
def test_malformed_cursors_are_a_400_not_a_500(client, cursor):
    make_posts(3)
    response = client.get("/api/timeline/", {"cursor": cursor})
    assert response.status_code == 400
    assert "cursor" in response.json()["error"]


def test_a_tampered_cursor_is_a_400(client):
    make_posts(25)
    next_url = client.get("/api/timeline/").json()["next"]
    cursor = next_url.split("cursor=", 1)[1]
    response = client.get("/api/timeline/", {"cursor": tampered(unquote(cursor))})
    assert response.status_code == 400
    assert "altered" in response.json()["error"]


def test_cursor_and_page_together_are_a_400(client):
    make_posts(25)
    cursor = encode_cursor(Position(timezone.now(), 5))
    assert client.get("/api/timeline/", {"cursor": cursor, "page": "1"}).status_code == 400


def test_a_cursor_past_the_oldest_post_is_an_empty_last_page(client):
    make_posts(3)
    cursor = encode_cursor(Position(timezone.now() - timedelta(days=3650), 1))
    assert client.get("/api/timeline/", {"cursor": cursor}).json() == {
        "results": [],
        "next": None,
    }


def test_html_timeline_links_older_posts_and_the_newest(client):
    make_posts(21)
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count("<article") == 20
    assert "post 20" in html and "post 0" not in html
    assert "Newest posts" not in html
    older = html.split('rel="next" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert older.startswith("?cursor=")
    second = client.get(f"/{older}").content.decode()
    assert second.count("<article") == 1 and "post 0" in second
    assert 'rel="first" href="/"' in second and 'rel="next"' not in second


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("?page=2", "no longer numbered"),
        ("?page=zero", "no longer numbered"),
        ("?cursor=bad", "broken or out of date"),
        ("?cursor=bad&page=1", "broken or out of date"),
    ],
)
def test_html_timeline_bad_paging_is_a_400_written_for_visitors(client, query, reason):
    response = client.get(f"/{query}")
    assert response.status_code == 400
    html = response.content.decode()
    assert reason in html
    assert 'href="/">Back to the newest posts</a>' in html
    for developer_word in ("`", "cursor", "JSON", "page="):
        assert developer_word not in html.split("<main", 1)[1], developer_word


def test_pages_are_built_for_phones_and_have_landmarks(client):
    make_posts(3)
    html = client.get("/").content.decode()
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    for landmark in ("<header", "<main", "<nav"):
        assert landmark in html
    assert '<link rel="icon" href="/static/casusult/favicon.svg"' in html


def test_favicon_ico_leads_to_the_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"] == "/static/casusult/favicon.svg"


def test_empty_timeline_is_fine(client):
    assert client.get("/api/timeline/").json() == {"results": [], "next": None}
    assert client.get("/").status_code == 200


def test_timeline_is_public_and_login_works(client):
    make_user("bob")
    assert client.get("/").status_code == 200
    response = client.post("/accounts/login/", {"username": "bob", "password": "pw-for-tests"})
    assert response.status_code == 302
    assert "bob" in client.get("/").content.decode()


def test_admin_requires_staff(client):
    assert client.get("/admin/").status_code == 302


@pytest.mark.parametrize("path", ["/no-such-page/", "/admin/no-such-page/x/"])
def test_a_missing_page_is_the_sites_404_for_phones(client, admin_user, path):
    client.force_login(admin_user)
    response = client.get(path)
    assert response.status_code == 404
    html = response.content.decode()
    assert "<h1>Page not found</h1>" in html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html


def test_an_error_is_the_sites_500_page(client, monkeypatch):
    def fail(request):
        raise RuntimeError("boom")

    monkeypatch.setattr("casusult.views.timeline_page", fail)
    client.raise_request_exception = False
    response = client.get("/")
    assert response.status_code == 500
    assert "<h1>Something went wrong</h1>" in response.content.decode()


@pytest.mark.parametrize("url", ["/", "/api/timeline/"])
def test_timeline_pages_are_never_stored_by_a_shared_cache(client, url):
    # A page a CDN or proxy served from its store reaches no view, so nobody's impressions are
    # recorded; and a logged-in page carries its viewer's CSRF token.
    make_posts(3)
    response = client.get(url)
    assert response.status_code == 200
    assert "private" in response.headers.get("Cache-Control", "")
