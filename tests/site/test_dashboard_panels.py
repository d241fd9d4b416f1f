"""The site's panels on the impressions dashboard: the task queues' numbers (real RQ Redis)."""

import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import override_settings

from impressions.tasks import flush_impressions_task
from tests.queues.rq.support import rq_settings

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/impressions/dashboard/"


@pytest.fixture
def rq_tasks():
    """The RQ backend on the tests' RQ Redis, emptied before and after."""
    connection = redis.Redis.from_url(settings.RQ_REDIS_URL)
    connection.flushdb()
    with override_settings(**rq_settings(settings.RQ_REDIS_URL)):
        yield
    connection.flushdb()


def queue_panel(html):
    start = html.index('aria-label="Task queues"')
    return html[start : html.index("</section>", start)]


def test_the_dashboard_shows_the_queue_numbers(admin_client, rq_tasks):
    flush_impressions_task.enqueue()
    flush_impressions_task.enqueue()

    panel = queue_panel(admin_client.get(DASHBOARD).content.decode())

    assert "default (RQBackend) default" in panel
    assert "queued=2" in panel
    assert 'href="/admin/queues/queuestatus/"' in panel


def test_an_unreachable_queue_is_marked_and_the_page_still_renders(admin_client):
    with override_settings(**rq_settings("redis://127.0.0.1:1/0?socket_timeout=0.2")):
        response = admin_client.get(DASHBOARD)
    assert response.status_code == 200
    assert "unavailable: ConnectionError" in queue_panel(response.content.decode())


def test_a_failing_panel_is_shown_unavailable_not_a_500(admin_client):
    with override_settings(IMPRESSIONS_DASHBOARD_PANELS=["tests.site.no_such_module.panel"]):
        response = admin_client.get(DASHBOARD)
    assert response.status_code == 200
    assert "unavailable: ModuleNotFoundError" in response.content.decode()


def test_the_queue_numbers_need_the_queue_pages_view_permission(client, rq_tasks):
    # Staff who may see the dashboard but not the queue pages (which answer them 403) see no
    # queue numbers there either; with the permission, they do.
    staff = get_user_model().objects.create_user("dashboard-only", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    client.force_login(staff)
    assert client.get("/admin/queues/queuestatus/").status_code == 403

    page = client.get(DASHBOARD).content.decode()

    assert 'aria-label="Task queues"' not in page
    assert "RQBackend" not in page
    staff.user_permissions.add(Permission.objects.get(codename="view_queuestatus"))
    staff = get_user_model().objects.get(pk=staff.pk)  # the permissions read again
    client.force_login(staff)
    assert "default (RQBackend) default" in queue_panel(client.get(DASHBOARD).content.decode())
