"""The admin dashboard, the post chart and the CSV export, against PostgreSQL and Redis."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import override_settings

import devservices
from impressions import dashboard, flush_now, stats
from impressions.flush import flush_pending
from impressions.live import read_buffer
from impressions.recorder import record_impressions
from tests.factories import make_posts

from .support import fail_a_flush_after_its_snapshot, scheduled_flushes

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/impressions/dashboard/"
CSV = "/admin/impressions/dashboard/csv/"


def bar_counts(html, chart_id):
    """{day: count} drawn in one chart's SVG bars."""
    start = html.index(f'id="chart-{chart_id}"')
    figure = html[start : html.index("</figure>", start)]
    return {
        day: int(count)
        for day, count in re.findall(
            r'<g class="bar[^"]*" role="img" data-day="([\d-]+)" data-count="(\d+)"', figure
        )
    }


def top_rows(html, name):
    start = html.index(f'id="top-{name}"')
    table = html[start : html.index("</table>", start)]
    return [
        (int(object_id), link, int(count))
        for object_id, link, count in re.findall(
            r'data-object-id="(\d+)" data-pending="\d+">\s*<td>\d+</td>\s*<td>(?:<a href="([^"]+)">)?'
            r'.*?<td class="count"><span class="number">(\d+)</span>',
            table,
            re.S,
        )
    ]


@pytest.mark.parametrize("url", [DASHBOARD, f"{CSV}?days=7", f"{CSV}?post=1&days=7"])
def test_anonymous_and_non_staff_users_are_refused(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    get_user_model().objects.create_user("visitor", password="pw")
    client.login(username="visitor", password="pw")
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_dashboard_shows_the_site_chart_and_top_posts(
    superuser_client, history_rows, standalone_buffer
):
    posts = make_posts(3)
    today = stats.today()
    history_rows(posts[0].id, today, 5)
    history_rows(posts[1].id, today, 7)
    history_rows(posts[1].id, today - timedelta(days=3), 2)
    history_rows(posts[2].id, today - timedelta(days=40), 50)  # outside the 30 days
    response = superuser_client.get(DASHBOARD)
    assert response.status_code == 200
    html = response.content.decode()
    drawn = bar_counts(html, "site")
    assert len(drawn) == 30
    assert drawn[today.isoformat()] == 12
    assert drawn[(today - timedelta(days=3)).isoformat()] == 2
    assert sum(drawn.values()) == 14
    assert "14 impressions from" in html  # the one-line summary
    assert '<title id="chart-site-title">Impressions per day, site-wide' in html
    assert top_rows(html, "today") == [
        (posts[1].id, f"/admin/casusult/post/{posts[1].id}/change/", 7),
        (posts[0].id, f"/admin/casusult/post/{posts[0].id}/change/", 5),
    ]
    assert [row[0::2] for row in top_rows(html, "in-the-range")] == [
        (posts[1].id, 9),
        (posts[0].id, 5),
    ]
    assert posts[2].id not in [row[0] for row in top_rows(html, "this-month")]


def test_range_switch_and_bad_ranges(staff_client, history_rows, standalone_buffer):
    posts = make_posts(1)
    today = stats.today()
    history_rows(posts[0].id, today - timedelta(days=60), 3)
    html = staff_client.get(f"{DASHBOARD}?days=90").content.decode()
    assert len(bar_counts(html, "site")) == 90
    assert top_rows(html, "in-the-range")[0][0::2] == (posts[0].id, 3)
    start = (today - timedelta(days=61)).isoformat()
    end = (today - timedelta(days=59)).isoformat()
    html = staff_client.get(f"{DASHBOARD}?from={start}&to={end}").content.decode()
    assert list(bar_counts(html, "site").values()) == [0, 3, 0]
    for query, message in [
        ("days=12", "days must be one of 7, 30, 90"),
        ("range=week", "range must be one of today, yesterday, 7d, 30d, 90d, 12mo"),
        ("from=2026-02-30", "from must be a date as YYYY-MM-DD"),
        (f"from={end}&to={start}", "is after the end"),
    ]:
        response = staff_client.get(f"{DASHBOARD}?{query}")
        assert response.status_code == 400
        html = response.content.decode()
        assert message in html
        assert len(bar_counts(html, "site")) == 30  # the default range is shown instead


@pytest.mark.parametrize("path", ["", "objects/", "objects/csv/", "csv/"])
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=0001-01-01&to=0001-01-02", "The start 0001-01-01 is too early"),
        ("from=0001-01-01&to=0001-01-01", "The start 0001-01-01 is too early"),
        ("to=9999-12-31", "The end 9999-12-31 is in the future"),
        ("from=9999-12-31", "The start 9999-12-31 is after the end"),
    ],
)
def test_ranges_at_the_ends_of_the_calendar_are_400(
    staff_client, standalone_buffer, path, query, message
):
    response = staff_client.get(f"{DASHBOARD}{path}?{query}")
    assert response.status_code == 400
    assert message in response.content.decode()


def test_buffer_panel_shows_pending_lost_schedule_and_last_flush(
    superuser_client, standalone_buffer, monkeypatch
):
    monkeypatch.setattr(flush_now, "WAIT_IN_REQUEST", 0)  # the Dummy backend never runs it
    posts = make_posts(2)
    record_impressions("u:1", [p.id for p in posts])
    flush_pending()
    record_impressions("u:2", [p.id for p in posts])
    record_impressions("u:3", [posts[0].id])
    standalone_buffer.incrby("{imp:0}:lost", 4)
    html = superuser_client.get(DASHBOARD).content.decode()
    assert re.search(r'id="buffer-pending">3\b', html)
    assert "<dt>Reported lost</dt><dd>4 impressions" in html
    # The record call took the guard and noted when its flush runs.
    assert re.search(r'id="next-flush">at [\d-]+ [\d:]+, <span>in (4|5) min</span>', html)
    assert re.search(r"applied,\s+2 impressions to 2 posts in \d+ ms;\s+\d+ s ago", html)
    # Flush now reuses the ledger's view and comes back here.
    assert 'action="/admin/impressions/flush/flush-now/"' in html
    before = len(scheduled_flushes())
    response = superuser_client.post(
        "/admin/impressions/flush/flush-now/", {"next": DASHBOARD + "?days=7"}
    )
    # Not run yet (Dummy): the page that waits for it, which then goes back there.
    assert response["Location"].startswith("/admin/impressions/flush/flush-now/")
    assert "next=%2Fadmin%2Fimpressions%2Fdashboard%2F%3Fdays%3D7" in response["Location"]
    assert len(scheduled_flushes()) == before + 1


def test_buffer_panel_reads_every_shard_standalone_and_on_a_cluster(buffer, monkeypatch):
    posts = make_posts(3)
    for viewer in range(5):
        record_impressions(f"u:taken-{viewer}", [posts[0].id])
    fail_a_flush_after_its_snapshot(monkeypatch)
    for viewer in range(20):  # viewers spread over the shards (and the cluster's nodes)
        record_impressions(f"u:{viewer}", [p.id for p in posts])
    panel = dashboard.buffer_panel(read_buffer())
    assert panel["available"] is True
    assert (panel["pending"], panel["in_snapshots"], panel["lost_reported"]) == (60, 5, 0)
    assert panel["scheduled"] is True


def test_staff_without_permissions_see_no_post_links_and_no_flush_button(
    staff_client, history_rows, standalone_buffer
):
    posts = make_posts(1)
    history_rows(posts[0].id, stats.today(), 3)
    html = staff_client.get(DASHBOARD).content.decode()
    assert top_rows(html, "today") == [(posts[0].id, "", 3)]  # its id, no link to a 403
    assert "flush-now" not in html
    user = get_user_model().objects.get(username="editor")
    user.user_permissions.add(
        Permission.objects.get(codename="change_flush"),
        Permission.objects.get(codename="view_post"),
    )
    html = staff_client.get(DASHBOARD).content.decode()
    assert "flush-now" in html
    assert top_rows(html, "today")[0][1] == f"/admin/casusult/post/{posts[0].id}/change/"


def test_dashboard_renders_with_redis_down(staff_client, history_rows):
    posts = make_posts(1)
    history_rows(posts[0].id, stats.today(), 4)
    port = devservices.free_port()  # nothing listens there
    with override_settings(IMPRESSIONS_REDIS_URL=f"redis://127.0.0.1:{port}/0"):
        response = staff_client.get(DASHBOARD)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="buffer-unavailable">unavailable' in html
    assert bar_counts(html, "site")[stats.today().isoformat()] == 4  # the rest still renders


def test_admin_index_and_post_list_link_to_the_dashboard(superuser_client, standalone_buffer):
    assert f'href="{DASHBOARD}"' in superuser_client.get("/admin/").content.decode()
    assert f'href="{DASHBOARD}"' in superuser_client.get("/admin/casusult/post/").content.decode()


def test_staff_who_may_view_the_dashboard_find_it_on_the_admin_index(staff_client):
    assert f'href="{DASHBOARD}"' in staff_client.get("/admin/").content.decode()


def test_post_page_shows_its_chart_for_the_last_30_days(
    superuser_client, history_rows, standalone_buffer
):
    posts = make_posts(2)
    today = stats.today()
    history_rows(posts[0].id, today, 6)
    history_rows(posts[0].id, today - timedelta(days=29), 1)
    history_rows(posts[0].id, today - timedelta(days=30), 99)  # 31 days ago: not drawn
    history_rows(posts[1].id, today, 50)  # another post
    response = superuser_client.get(f"/admin/casusult/post/{posts[0].id}/change/")
    html = response.content.decode()
    drawn = bar_counts(html, f"object-{posts[0].id}")
    assert len(drawn) == 30
    assert sum(drawn.values()) == 7
    assert drawn[today.isoformat()] == 6
    assert f"{CSV}?post={posts[0].id}&amp;days=30" in html
    add_page = superuser_client.get("/admin/casusult/post/add/").content.decode()
    assert "impressions-chart" not in add_page


def test_csv_of_one_post_and_of_the_top_posts(staff_client, history_rows):
    posts = make_posts(2)
    today = stats.today()
    history_rows(posts[0].id, today, 2)
    history_rows(posts[1].id, today - timedelta(days=1), 5)
    response = staff_client.get(f"{CSV}?post={posts[0].id}&days=7")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    start = today - timedelta(days=6)
    assert response["Content-Disposition"] == (
        f'attachment; filename="impressions-{posts[0].id}-{start}-{today}.csv"'
    )
    lines = response.content.decode().splitlines()
    assert lines[0] == "post_id,day,impressions"
    assert len(lines) == 8
    assert lines[-1] == f"{posts[0].id},{today},2"
    yesterday = today - timedelta(days=1)
    response = staff_client.get(f"{CSV}?from={yesterday}&to={today}")
    assert response.content.decode().splitlines() == [
        "post_id,day,impressions",
        f"{posts[1].id},{yesterday},5",
        f"{posts[1].id},{today},0",
        f"{posts[0].id},{yesterday},0",
        f"{posts[0].id},{today},2",
    ]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("post=abc&days=7", "post must be an object id"),
        ("days=5", "days must be one of"),
        ("post=--1", "post must be an object id"),
        ("post=-9223372036854775809", "post must be an object id"),
        (
            "post=99999999999999999999999",
            "post must be an object id, a whole number from -9223372036854775808 to"
            " 9223372036854775807,"
            " not '99999999999999999999'.",
        ),
        ("post=9223372036854775808", "post must be an object id"),
        (f"post={'9' * 5000}", "post must be an object id"),
    ],
)
def test_csv_bad_requests_are_400_with_a_message(staff_client, query, message):
    response = staff_client.get(f"{CSV}?{query}")
    assert response.status_code == 400
    assert message in response.content.decode()


def test_csv_of_a_post_that_never_was_is_404_of_a_deleted_one_its_history(
    staff_client, history_rows
):
    post, deleted = make_posts(2)
    deleted_id = deleted.id
    history_rows(deleted_id, stats.today(), 3)
    deleted.delete()
    for missing in [deleted_id + 1000, 9223372036854775807]:
        response = staff_client.get(f"{CSV}?post={missing}&range=7d")
        assert response.status_code == 404
        assert response.content.decode() == (
            f"No post has the id {missing}, and the history has no impressions of that id in the"
            " last 7 days."
        )
    response = staff_client.get(f"{CSV}?post={deleted_id}&range=7d")
    assert response.status_code == 200
    assert response.content.decode().splitlines()[-1] == f"{deleted_id},{stats.today()},3"
    response = staff_client.get(f"{CSV}?post={post.id}&range=7d")  # no impressions, still there
    assert response.status_code == 200
    assert len(response.content.decode().splitlines()) == 8
