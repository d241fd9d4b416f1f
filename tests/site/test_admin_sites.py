"""Two admin sites mounted at once: every link, form and redirect of the impressions and queues
admin pages stays on the site it is on (Django's `current_app`), the second site's as the first's."""

from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.test import override_settings
from django.urls import Resolver404, resolve

from impressions import flush_now
from impressions.flush import flush_pending
from impressions.models import Flush
from tests.queues.rq.support import rq_settings

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.site.admin_sites_urls")]

IMMEDIATE_TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
# Every admin URL the apps' pages link, post to or redirect to: each must be seen on the site.
EXPECTED = {
    "index",
    "app_list",
    "impressions_dashboard_changelist",
    "impressions_dashboard_csv",
    "impressions_dashboard_objects",
    "impressions_objects_csv",
    "impressions_flush_changelist",
    "impressions_flush_change",
    "impressions_flush_now",
    "impressions_flush_wait",
    "casusult_post_changelist",
    "casusult_post_change",
    "queues_queuestatus_changelist",
}


class Links(HTMLParser):
    """The URLs of a page's href, src and action attributes."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in {"href", "src", "action"} and value]


def links_of(response):
    parser = Links()
    parser.feed(response.content.decode())
    return parser.urls


class Visit:
    """Pages of the admin site `name`, each link and redirect checked to stay on it."""

    def __init__(self, client, name):
        self.client, self.name = client, name
        self.seen, self.wrong = set(), []

    def check(self, url, came_from):
        parts = urlsplit(url)
        if parts.scheme or parts.netloc:
            self.wrong.append(f"{came_from} links off the site: {url}")
            return
        if not parts.path or parts.path == "/" or parts.path.startswith("/static/"):
            return  # ?page=2, #impressions, the site itself (site_url), files
        try:
            match = resolve(parts.path)
        except Resolver404:
            self.wrong.append(f"{came_from} links nowhere: {url}")
            return
        if "admin" in match.app_names:
            self.seen.add(match.url_name)
            if match.namespace != self.name:
                self.wrong.append(f"{came_from} leads into {match.namespace}: {url}")
        elif match.namespace != "django_rq":  # the one RQ dashboard, shared by the sites
            self.wrong.append(f"{came_from} leads out of the admin: {url}")

    def page(self, url, status=200):
        response = self.client.get(url)
        assert response.status_code == status, url
        for link in links_of(response):
            self.check(link, url)
        return response

    def post(self, url, data):
        response = self.client.post(url, data)
        assert response.status_code == 302, url
        self.check(response["Location"], url)
        return response["Location"]


@pytest.mark.parametrize("site", ["admin", "staffadmin"])
def test_every_link_of_the_apps_admin_pages_stays_on_its_site(
    admin_client, site, site_data, settings, monkeypatch
):
    visit = Visit(admin_client, site)
    root, post, flush = f"/{site}/", site_data[0], Flush.objects.get()

    with override_settings(**rq_settings(settings.RQ_REDIS_URL)):  # links the RQ dashboard
        visit.page(f"{root}impressions/dashboard/?range=7d")
        visit.page(f"{root}queues/queuestatus/")
    visit.page(f"{root}impressions/dashboard/objects/?range=7d")
    visit.page(f"{root}impressions/flush/")
    visit.page(f"{root}impressions/flush/{flush.pk}/change/")
    visit.page(f"{root}casusult/post/")
    visit.page(f"{root}casusult/post/{post.pk}/change/")

    # Flush now: its waiting page, its way back, the message naming the flush.
    monkeypatch.setattr(flush_now, "WAIT_IN_REQUEST", 0)
    waiting = visit.post(f"{root}impressions/flush/flush-now/", {"next": f"{root}casusult/post/"})
    visit.page(waiting)
    flush_pending(keep_schedule=True)  # what the worker does
    back = admin_client.get(waiting)
    assert back.status_code == 302 and back["Location"] == f"{root}casusult/post/"
    visit.page(back["Location"])
    with override_settings(TASKS=IMMEDIATE_TASKS):  # done at once, back to a foreign next: ledger
        ledger = visit.post(
            f"{root}impressions/flush/flush-now/", {"next": "https://evil.example/"}
        )
    visit.page(ledger)

    assert not visit.wrong, "\n".join(visit.wrong)
    assert EXPECTED - visit.seen == set()  # none of the links the pages make went unchecked


def test_a_site_without_the_ledger_and_the_dashboard_shows_the_counted_model_without_their_links(
    admin_client, site_data
):
    visit = Visit(admin_client, "postsadmin")
    listing = visit.page("/postsadmin/casusult/post/").content.decode()
    change = visit.page(f"/postsadmin/casusult/post/{site_data[0].pk}/change/").content.decode()

    assert visit.wrong == []
    assert "Flush impressions now" not in listing and "Impressions dashboard" not in listing
    assert 'id="impressions-pending">1<' in change and "CSV of these days" not in change
