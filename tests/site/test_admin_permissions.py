"""Who may open each admin page of the apps, by Django admin's conventions: the admin site lets in
active staff (or whom its own has_permission admits), and inside it a page showing a model's data
needs that model's view (or change) permission, 403 without; "Flush now" writes, and needs the
ledger's change permission; the index, the app lists and the pages' links leave out what the user
may not open. Each user below tries every URL of the pages (docs/impressions/counting.md,
"Permissions")."""

import csv
import io

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import override_settings

from impressions.models import Flush, SiteDailyImpressions

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.site.permission_sites_urls")]

IMMEDIATE_TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
EVERY_PERMISSION = ["view_post", "change_post", "view_dashboard", "view_flush", "change_flush"]
# name -> (is_staff, is_active, is_superuser, permissions)
USERS = {
    "not staff": (False, True, False, EVERY_PERMISSION),
    "inactive": (True, False, False, EVERY_PERMISSION),
    "no permission": (True, True, False, []),
    "views posts": (True, True, False, ["view_post"]),
    "views the dashboard": (True, True, False, ["view_dashboard"]),
    "views impressions": (True, True, False, ["view_dashboard", "view_flush"]),
    "changes": (True, True, False, ["change_post", "change_flush", "view_dashboard"]),
    "superuser": (True, True, True, []),
}


def make_user(name):
    is_staff, is_active, is_superuser, permissions = USERS[name]
    user = get_user_model().objects.create_user(
        name.replace(" ", "-"),
        password="pw",
        is_staff=is_staff,
        is_active=is_active,
        is_superuser=is_superuser,
    )
    user.user_permissions.add(*Permission.objects.filter(codename__in=permissions))
    return user


def outcome(response):
    """What a user got: the page ("ok"), the admin login, 403 or 404."""
    if response.status_code == 302 and "/login/" in response["Location"]:
        return "login"
    return {403: "denied", 404: "missing"}.get(response.status_code, "ok")


def pages(root, post, flush):
    """(method, URL, the permissions any one of which opens it; None: every user let in). An app's
    page of a user who may view none of its models is missing (404), as Django answers it."""
    dashboard = f"{root}impressions/dashboard/"
    return [
        ("GET", root, None),
        ("GET", f"{root}impressions/", {"view_dashboard", "view_flush", "change_flush"}),
        ("GET", f"{root}casusult/post/", {"view_post", "change_post"}),
        ("GET", f"{root}casusult/post/{post.pk}/change/", {"view_post", "change_post"}),
        ("GET", f"{root}casusult/post/{post.pk}/history/", {"view_post", "change_post"}),
        ("GET", f"{root}impressions/flush/", {"view_flush", "change_flush"}),
        ("GET", f"{root}impressions/flush/{flush.pk}/change/", {"view_flush", "change_flush"}),
        ("GET", f"{root}impressions/flush/{flush.pk}/history/", {"view_flush", "change_flush"}),
        ("POST", f"{root}impressions/flush/flush-now/", {"change_flush"}),
        (
            "GET",
            f"{root}impressions/flush/flush-now/job-1/?since=2026-12-01T00:00:00",
            {"change_flush"},
        ),
        ("GET", dashboard, {"view_dashboard"}),
        ("GET", f"{dashboard}?range=7d", {"view_dashboard"}),
        ("GET", f"{dashboard}objects/?range=7d", {"view_dashboard"}),
        ("GET", f"{dashboard}csv/?range=7d", {"view_dashboard"}),
        ("GET", f"{dashboard}csv/?post={post.pk}&range=7d", {"view_dashboard"}),
        ("GET", f"{dashboard}objects/csv/?range=7d", {"view_dashboard"}),
    ]


def expected(user, needs, site_admits):
    if not site_admits:
        return "login"
    if needs is None or user.is_superuser:
        return "ok"
    perms = {name.split(".")[1] for name in user.get_all_permissions()}
    return "ok" if perms & needs else "denied"


def tour(client, user, root, site_data, site_admits):
    """[(URL, expected, got)] of every page on the site at `root`; a refused POST writes nothing."""
    flush = Flush.objects.earliest("started_at")  # "Flush now" adds others
    client.force_login(user)
    wrong = []
    for method, url, needs in pages(root, site_data[0], flush):
        flushes = Flush.objects.count()
        with override_settings(TASKS=IMMEDIATE_TASKS):
            response = getattr(client, method.lower())(url)
        want, got = expected(user, needs, site_admits), outcome(response)
        if want == "denied" and url.endswith("/impressions/"):
            want = "missing"
        if got != want:
            wrong.append(f"{user.username} {method} {url}: {got}, not {want}")
        if method == "POST" and got != "ok":
            assert Flush.objects.count() == flushes, f"{user.username} {url} flushed"
    client.logout()
    return wrong


@pytest.mark.parametrize("name", USERS)
def test_each_page_of_the_apps_asks_for_its_model_s_permission(client, site_data, name):
    user = make_user(name)
    site_admits = user.is_active and user.is_staff

    assert tour(client, user, "/admin/", site_data, site_admits) == []


@pytest.mark.parametrize("name", ["not staff", "no permission", "views impressions"])
def test_a_site_of_its_own_decides_who_enters_its_pages_their_permissions(client, site_data, name):
    # memberadmin/ lets any active user in: inside, each page asks for its permission as on
    # admin/ (the dashboard asked for is_staff on top, and refused the site's members).
    user = make_user(name)

    assert tour(client, user, "/memberadmin/", site_data, site_admits=True) == []
    assert tour(client, user, "/superadmin/", site_data, site_admits=False) == []


def links(client, url):
    return client.get(url).content.decode()


def test_the_index_and_the_pages_link_only_what_the_user_may_open(client, site_data):
    post = site_data[0]
    dashboard_link = 'href="/admin/impressions/dashboard/"'

    client.force_login(make_user("no permission"))
    index = links(client, "/admin/")
    assert dashboard_link not in index and "/admin/impressions/flush/" not in index

    client.force_login(make_user("views posts"))
    listing = links(client, "/admin/casusult/post/")
    change = links(client, f"/admin/casusult/post/{post.pk}/change/")
    assert dashboard_link not in links(client, "/admin/")
    assert dashboard_link not in listing and "flush-now" not in listing
    assert 'id="impressions-pending">1<' in change  # its own counts, yes
    assert "CSV of these days" not in change and dashboard_link not in change

    client.force_login(make_user("views the dashboard"))
    page = links(client, "/admin/impressions/dashboard/")
    assert dashboard_link in links(client, "/admin/")
    assert "/admin/impressions/flush/" not in page  # the last flush, unlinked: 403 there

    client.force_login(make_user("views impressions"))
    page = links(client, "/admin/impressions/dashboard/")
    assert dashboard_link in links(client, "/admin/")
    assert f"/admin/impressions/flush/{Flush.objects.get().pk}/change/" in page  # last flush
    assert "flush-now" not in page and "flush-now" not in links(client, "/admin/impressions/flush/")

    client.force_login(make_user("changes"))
    for url in [
        "/admin/impressions/dashboard/",
        "/admin/impressions/flush/",
        "/admin/casusult/post/",
    ]:
        assert 'action="/admin/impressions/flush/flush-now/"' in links(client, url), url
    change = links(client, f"/admin/casusult/post/{post.pk}/change/")
    assert "CSV of these days" in change and dashboard_link in change


def test_the_dashboard_names_the_counted_objects_only_to_those_who_may_view_them(client, site_data):
    post = site_data[0]
    post.body = "a post only its viewers may read"
    post.save(update_fields=["body"])
    pages = [
        "/admin/impressions/dashboard/?range=7d",
        "/admin/impressions/dashboard/objects/?range=7d",
    ]
    csv_url = "/admin/impressions/dashboard/objects/csv/?range=7d"

    ledger_only = make_user("views impressions")
    client.force_login(ledger_only)
    for url in pages:
        html = links(client, url)
        assert "only its viewers" not in html and f"#{post.pk}" in html, url
        assert f"/admin/casusult/post/{post.pk}/change/" not in html, url
    rows = list(csv.reader(io.StringIO(b"".join(client.get(csv_url).streaming_content).decode())))
    assert {row[2] for row in rows[1:]} == {""} and len(rows) == 3  # ids and counts, no names

    ledger_only.user_permissions.add(Permission.objects.get(codename="view_post"))
    client.force_login(ledger_only)
    for url in pages:
        html = links(client, url)
        assert "only its viewers" in html and f"/admin/casusult/post/{post.pk}/change/" in html
    rows = list(csv.reader(io.StringIO(b"".join(client.get(csv_url).streaming_content).decode())))
    assert "a post only its viewers may read" in [row[2] for row in rows]


@pytest.mark.parametrize(
    ("root", "permissions", "names"),
    [
        ("/closedpostsadmin/", ["view_dashboard", "view_post"], False),
        ("/openpostsadmin/", ["view_dashboard"], True),
    ],
)
def test_the_counted_model_s_own_admin_decides_who_sees_the_names(
    client, site_data, root, permissions, names
):
    # The site's PostAdmin overrides has_view_permission: the dashboard follows it, as the post's
    # own pages do, rather than the model permissions alone.
    post = site_data[0]
    post.body = "a post its admin guards"
    post.save(update_fields=["body"])
    user = make_user("no permission")
    user.user_permissions.add(*Permission.objects.filter(codename__in=permissions))
    client.force_login(user)
    change = f"{root}casusult/post/{post.pk}/change/"
    assert (client.get(change).status_code == 200) is names

    for url in ["impressions/dashboard/?range=7d", "impressions/dashboard/objects/?range=7d"]:
        html = links(client, root + url)
        assert ("its admin guards" in html) is names, url
        assert (change in html) is names, url
    response = client.get(f"{root}impressions/dashboard/objects/csv/?range=7d")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert ("a post its admin guards" in [row[2] for row in rows]) is names


def test_the_dashboard_has_no_page_of_a_row(admin_client, site_data):
    # Its proxy's rows are the site-wide days: no change, history, add or delete page of one.
    day = SiteDailyImpressions.objects.get().day
    for url in [f"{day}/change/", f"{day}/history/", f"{day}/delete/", "add/", f"{day}/"]:
        response = admin_client.get(f"/admin/impressions/dashboard/{url}")
        assert response.status_code == 404, url
