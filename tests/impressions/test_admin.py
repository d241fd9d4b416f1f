"""Admin: flushed and live pending counts on the Post list, the read-only ledger, "flush now"."""

import re

import pytest
import redis
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.tasks import task_backends
from django.test import override_settings
from django.utils import timezone

from casusult.models import Post
from impressions import flush_now
from impressions.admin import PendingImpressionsAdminMixin
from impressions.flush import flush_pending
from impressions.models import Flush
from impressions.recorder import record_impressions
from queues.rq.worker import RQWorker
from tests.factories import make_posts
from tests.queues.rq.support import rq_settings

from .support import scheduled_flushes

IMMEDIATE_TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(user)
    return client


def cells(html, post, column):
    marker = f'<td class="field-{column}">'
    row_start = html.index(f"/admin/casusult/post/{post.id}/change/")
    row = html[row_start : html.index("</tr>", row_start)]
    start = row.index(marker) + len(marker)
    return row[start : row.index("</td>", start)]


def test_post_list_shows_flushed_and_live_pending_counts(staff_client, buffer):
    posts = make_posts(2)
    record_impressions("u:1", [p.id for p in posts])
    flush_pending()
    record_impressions("u:2", [posts[0].id])
    record_impressions("u:3", [posts[0].id])
    html = staff_client.get("/admin/casusult/post/").content.decode()
    assert cells(html, posts[0], "impressions") == "1"
    assert cells(html, posts[0], "pending_impressions") == "2"
    assert cells(html, posts[1], "pending_impressions") == "0"


def test_post_list_sorts_by_flushed_impressions(staff_client, standalone_buffer):
    posts = make_posts(3)
    for viewer, post in enumerate(posts):  # post i gets i + 1 impressions
        for extra in range(viewer + 1):
            record_impressions(f"u:{viewer}-{extra}", [post.id])
    flush_pending()
    html = staff_client.get("/admin/casusult/post/?o=-5").content.decode()  # 5th column, desc
    positions = [html.index(f"/admin/casusult/post/{post.id}/change/") for post in posts]
    assert positions == sorted(positions, reverse=True)


def test_post_list_says_unavailable_when_redis_is_down(staff_client, private_redis):
    posts = make_posts(1)
    private_redis.stop()
    with override_settings(IMPRESSIONS_REDIS_URL=private_redis.url):
        response = staff_client.get("/admin/casusult/post/")
    assert response.status_code == 200
    html = response.content.decode()
    assert cells(html, posts[0], "pending_impressions") == "unavailable"
    assert "Redis is unavailable" in html


def test_ledger_is_read_only(staff_client, standalone_buffer):
    record_impressions("u:1", [p.id for p in make_posts(1)])
    flush_pending()
    ledger_page = staff_client.get("/admin/impressions/flush/")
    assert ledger_page.status_code == 200
    assert "Flush impressions now" in ledger_page.content.decode()
    flush = Flush.objects.get()
    assert staff_client.get(f"/admin/impressions/flush/{flush.id}/change/").status_code == 200
    assert staff_client.post(f"/admin/impressions/flush/{flush.id}/delete/").status_code == 403
    assert staff_client.get("/admin/impressions/flush/add/").status_code == 403
    assert staff_client.get("/admin/impressions/flush/flush-now/").status_code == 405


def test_a_ledger_url_with_a_nul_byte_is_a_flush_that_does_not_exist(staff_client, settings):
    """Without the site's guard (casusult.security), as in a project of its own: PostgreSQL
    refuses a NUL in text, and the ledger's id is text (a 500, DataError, before)."""
    settings.MIDDLEWARE = [
        name
        for name in settings.MIDDLEWARE
        if name != "casusult.security.AdminMalformedRequestMiddleware"
    ]
    for view in ("change", "history"):
        response = staff_client.get(f"/admin/impressions/flush/a%00b/{view}/")
        assert response.status_code == 302, view
        assert response["Location"] == "/admin/", view
        message = str(next(iter(get_messages(response.wsgi_request))))
        assert "with ID" in message and "exist" in message, view
    # Read-only: refused as for any flush.
    assert staff_client.get("/admin/impressions/flush/a%00b/delete/").status_code == 403


def test_flush_now_comes_back_saying_what_that_flush_did(staff_client, standalone_buffer):
    posts = make_posts(2)
    record_impressions("u:1", [p.id for p in posts])
    with override_settings(TASKS=IMMEDIATE_TASKS):  # runs in the request: done at once
        response = staff_client.post(
            "/admin/impressions/flush/flush-now/", {"next": "/admin/casusult/post/"}, follow=True
        )
    assert response.redirect_chain == [("/admin/casusult/post/", 302)]
    flush = Flush.objects.get()
    message = str(next(iter(response.context["messages"])))
    assert re.fullmatch(
        rf'Flush <a href="/admin/impressions/flush/{flush.pk}/change/">{flush.pk}</a>:'
        r" 2 impressions applied to 2 posts in \d+ ms\.",
        message,
    )
    assert cells(response.content.decode(), posts[0], "impressions") == "1"


def test_flush_now_waits_on_a_page_of_its_own_until_a_worker_ran_it(
    staff_client, standalone_buffer, monkeypatch
):
    monkeypatch.setattr(flush_now, "WAIT_IN_REQUEST", 0)
    record_impressions("u:1", [p.id for p in make_posts(1)])
    before = len(scheduled_flushes())
    response = staff_client.post("/admin/impressions/flush/flush-now/", {"next": "/admin/"})
    enqueued = scheduled_flushes()
    assert len(enqueued) == before + 1
    assert enqueued[-1].task.run_after is None  # now, not after the window
    assert enqueued[-1].kwargs == {"manual": True}
    waiting_url = response["Location"]
    assert waiting_url.startswith(f"/admin/impressions/flush/flush-now/{enqueued[-1].id}/?since=")
    waiting = staff_client.get(waiting_url)
    assert waiting.status_code == 200
    assert '<meta http-equiv="refresh" content="1">' in waiting.content.decode()
    flush_pending(keep_schedule=True)  # what the worker does (the Dummy backend keeps no result)
    done = staff_client.get(waiting_url)
    assert done.status_code == 302 and done["Location"] == "/admin/"
    message = str(next(iter(get_messages(done.wsgi_request))))
    assert "1 impression applied to 1 post in " in message
    assert staff_client.get(waiting_url.split("?")[0] + "?since=yesterday").status_code == 400


@pytest.mark.django_db(transaction=True)  # the worker closes connections between jobs
def test_flush_now_finds_the_flush_in_the_ledger_when_the_backend_kept_no_result(
    staff_client, standalone_buffer, monkeypatch, settings
):
    # RESULT_TTL 0: RQ deletes the job as it finishes; the page said "The flush task is gone from
    # the queue; see the ledger." for every flush that had run.
    monkeypatch.setattr(flush_now, "WAIT_IN_REQUEST", 0)
    queue = redis.Redis.from_url(settings.RQ_REDIS_URL)
    queue.flushdb()
    record_impressions("u:1", [p.id for p in make_posts(1)])
    try:
        with override_settings(**rq_settings(settings.RQ_REDIS_URL, RESULT_TTL=0)):
            waiting_url = staff_client.post(
                "/admin/impressions/flush/flush-now/", {"next": "/admin/"}
            )["Location"]
            assert RQWorker(task_backends["default"], burst=True).run() == 0
            done = staff_client.get(waiting_url)
    finally:
        queue.flushdb()
    assert done.status_code == 302 and done["Location"] == "/admin/"
    message = str(next(iter(get_messages(done.wsgi_request))))
    assert "1 impression applied to 1 post in " in message, message


def test_flush_now_goes_back_only_to_this_site(staff_client, standalone_buffer, monkeypatch):
    monkeypatch.setattr(flush_now, "WAIT_IN_REQUEST", 0)
    response = staff_client.post(
        "/admin/impressions/flush/flush-now/", {"next": "https://evil.example/"}
    )
    assert "next=%2Fadmin%2Fimpressions%2Fflush%2F" in response["Location"]
    assert "evil" not in response["Location"]


def test_the_ledger_is_spelled_right_and_reads_to_the_second(staff_client, standalone_buffer):
    record_impressions("u:1", [p.id for p in make_posts(2)])
    flush_pending()
    flush = Flush.objects.get()
    # The start to the microsecond (the id has whole seconds): the duration is the flush's own.
    assert flush.started_at.microsecond != 0
    html = staff_client.get("/admin/impressions/flush/").content.decode()
    assert "flushs" not in html.lower()
    assert "Select flush to view" in html
    assert "1 flush\n" in html  # the paginator's count
    headers = re.findall(r'<th scope="col" class="[^"]*column-(\w+)', html)
    assert headers[:5] == ["started", "outcome", "impressions_applied", "updated", "duration"]
    started = timezone.localtime(flush.started_at).strftime("%Y-%m-%d %H:%M:%S")
    assert f'/change/">{started}</a>' in html
    assert re.search(r'<td class="field-duration">\d+ ms</td>', html)
    assert '<td class="field-dropped">-</td>' in html
    index = staff_client.get("/admin/").content.decode()
    assert ">Flushes</a>" in index and "Flushs" not in index


def test_admin_is_staff_only(client, standalone_buffer):
    get_user_model().objects.create_user("visitor", password="pw")
    client.login(username="visitor", password="pw")
    for url in ["/admin/casusult/post/", "/admin/impressions/flush/"]:
        assert client.get(url).status_code == 302  # to the admin login
    response = client.post("/admin/impressions/flush/flush-now/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    assert scheduled_flushes() == []


def test_flush_now_needs_the_ledger_s_change_permission(client, standalone_buffer, monkeypatch):
    # It writes: the ledger's view permission, which reads, neither shows nor presses it.
    monkeypatch.setattr(flush_now, "WAIT_IN_REQUEST", 0)
    record_impressions("u:1", [p.id for p in make_posts(1)])  # schedules its own flush
    before = len(scheduled_flushes())
    reader = get_user_model().objects.create_user("reader", is_staff=True)
    reader.user_permissions.add(Permission.objects.get(codename="view_flush"))
    client.force_login(reader)
    waiting = "/admin/impressions/flush/flush-now/job-1/?since=2026-12-01T00:00:00"

    assert "flush-now" not in client.get("/admin/impressions/flush/").content.decode()
    assert client.post("/admin/impressions/flush/flush-now/").status_code == 403
    assert client.get(waiting).status_code == 403
    assert len(scheduled_flushes()) == before

    reader.user_permissions.add(Permission.objects.get(codename="change_flush"))
    client.force_login(reader)
    assert (
        'action="/admin/impressions/flush/flush-now/"'
        in client.get("/admin/impressions/flush/").content.decode()
    )
    assert client.post("/admin/impressions/flush/flush-now/").status_code == 302
    assert len(scheduled_flushes()) == before + 1


class EditablePostAdmin(PendingImpressionsAdminMixin, admin.ModelAdmin):
    """An adopter's admin of the counted model that lists no read-only field of its own."""


def test_the_counted_model_s_admin_never_writes_the_count(rf, buffer):
    post = make_posts(1)[0]
    model_admin = EditablePostAdmin(Post, admin.site)
    request = rf.post("/")
    assert "impressions" in model_admin.get_readonly_fields(request, post)
    loaded = Post.objects.get(pk=post.pk)  # the admin reads the row...
    record_impressions("u:1", [post.pk])
    flush_pending()  # ...a flush commits...
    loaded.body = "edited"
    model_admin.save_model(request, loaded, form=None, change=True)  # ...then the admin saves
    post.refresh_from_db()
    assert (post.body, post.impressions) == ("edited", 1)


@pytest.mark.django_db(transaction=True)
def test_flush_now_under_atomic_requests_commits_the_flush_whatever_the_view_does_next(
    staff_client, standalone_buffer, monkeypatch
):
    """ATOMIC_REQUESTS with a backend that runs the flush in the request: the flush takes the
    counts out of Redis, so its writes must not wait on the view's transaction, which a later
    failure of the view rolls back (the counts were then gone from both)."""
    posts = make_posts(2)
    record_impressions("u:1", [p.id for p in posts])
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)

    def fails_after_the_flush(*args, **kwargs):
        raise RuntimeError("the view fails after the flush ran")

    monkeypatch.setattr(flush_now, "wait", fails_after_the_flush)
    with override_settings(TASKS=IMMEDIATE_TASKS), pytest.raises(RuntimeError):
        staff_client.post("/admin/impressions/flush/flush-now/", {"next": "/admin/"})
    assert sorted(Post.objects.values_list("impressions", flat=True)) == [1, 1]
    assert Flush.objects.filter(outcome=Flush.Outcome.APPLIED).count() == 1
