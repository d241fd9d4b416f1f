import pytest

from casusult.models import Post
from tests.factories import make_posts, make_user

pytestmark = pytest.mark.django_db


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


def test_api_pages_by_twenty_and_links_the_next_page(client):
    posts = make_posts(45)
    newest_first = [p.id for p in reversed(posts)]
    seen = []
    url = "/api/timeline/"
    pages = 0
    while url:
        body = client.get(url).json()
        seen += [item["id"] for item in body["results"]]
        url = body["next"]
        pages += 1
    assert pages == 3
    assert seen == newest_first


def test_equal_timestamps_keep_a_stable_order_across_pages(client):
    author = make_user("same-time")
    Post.objects.bulk_create(Post(author=author, body=str(i)) for i in range(25))
    ids = [i["id"] for i in client.get("/api/timeline/").json()["results"]]
    ids += [i["id"] for i in client.get("/api/timeline/?page=2").json()["results"]]
    assert len(set(ids)) == 25


@pytest.mark.parametrize("page", ["0", "-1", "abc", "1.5", "99", "", "١"])  # noqa: RUF001
def test_bad_paging_input_is_a_400_with_a_json_error(client, page):
    make_posts(3)
    response = client.get("/api/timeline/", {"page": page})
    assert response.status_code == 400
    assert "page" in response.json()["error"]


def test_html_timeline_lists_twenty_posts_and_pages(client):
    make_posts(21)
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count("<article") == 20
    assert "post 20" in html and "post 0" not in html
    second = client.get("/?page=2").content.decode()
    assert second.count("<article") == 1 and "post 0" in second


def test_html_timeline_bad_page_is_400(client):
    assert client.get("/?page=zero").status_code == 400


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
