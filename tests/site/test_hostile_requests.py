"""Requests no browser of the site's pages sends, aimed at the admin as at the public pages: a NUL
byte in the path or the query string, a "view on site" link to a model without a table. Each is a
4xx, never a 500."""

import pytest
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone
from django_rq.models import Dashboard as RQDashboard

from impressions.models import Flush
from tests.factories import make_posts

pytestmark = pytest.mark.django_db


# Each was a 500 on PostgreSQL ("PostgreSQL text fields cannot contain NUL (0x00) bytes"): a text
# column compared with a value holding a NUL, in Django's admin or its "view on site" shortcut.
NUL_URLS = [
    "/admin/impressions/flush/a%00b/change/",
    "/admin/impressions/flush/%00/history/",
    "/admin/impressions/flush/%00/delete/",
    "/admin/impressions/flush/?id=%00",
    "/admin/impressions/flush/?recovered_by=a%00",
    "/admin/casusult/post/?body=%00",
    "/admin/auth/user/?username=%00",
    "/admin/r/{session_type}/%00/",
]


@pytest.mark.parametrize("url", NUL_URLS)
def test_a_nul_byte_in_an_admin_path_or_query_is_a_400_in_the_sites_look(admin_client, url):
    make_posts(2)
    Flush.objects.create(id="20261206T000000-abcdef12", started_at=timezone.now(), outcome="empty")
    session_type = ContentType.objects.get(app_label="sessions", model="session").pk
    response = admin_client.get(url.format(session_type=session_type))
    assert response.status_code == 400
    assert "<h1>Bad request</h1>" in response.content.decode()


def test_the_public_pages_keep_their_own_answers_to_a_nul_byte(client):
    make_posts(2)
    response = client.get("/api/timeline/", {"cursor": "\x00"})
    assert response.status_code == 400
    assert "cursor" in response.json()["error"]  # the API's JSON 400, as documented
    assert client.get("/api/timeline/", {"x": "\x00"}).status_code == 200  # not a parameter
    assert client.get("/%00").status_code == 404
    assert client.get("/admin/", {"x": "\x00"}).status_code == 400  # before the login


def test_view_on_site_of_a_model_without_a_table_is_a_404(admin_client):
    """django-rq's Dashboard model has no table (managed = False): Django's shortcut looked the
    object up all the same, a 500 (relation "django_rq_dashboard" does not exist)."""
    rq_type = ContentType.objects.get_for_model(RQDashboard).pk
    for object_id in ("1", "-1"):
        assert admin_client.get(f"/admin/r/{rq_type}/{object_id}/").status_code == 404
    # int() reads a fullwidth or padded digit as the number: the same content type.
    assert admin_client.get(f"/admin/r/ {rq_type}/1/").status_code == 404


def test_view_on_site_still_needs_staff(client):
    rq_type = ContentType.objects.get_for_model(RQDashboard).pk
    response = client.get(f"/admin/r/{rq_type}/1/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
