"""The dashboard and a post's chart in a real browser (Debian's headless Chromium, Playwright)."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model

from casusult.models import Post
from impressions import keys, stats
from tests.browser import USER_AGENT
from tests.factories import make_posts

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "browser-test-pw"


def open_dashboard(page, live_server):
    """Log in as "boss" (a superuser the test made) and land on the dashboard."""
    page.goto(f"{live_server.url}/admin/login/?next=/admin/impressions/dashboard/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/impressions/dashboard/")


def drawn_bars(page, figure):
    """{day: count} of the bars the browser laid out (height > 0 where count > 0)."""
    bars = page.locator(f"{figure} svg g.bar")
    rows = bars.evaluate_all(
        "bars => bars.map(g => [g.dataset.day, Number(g.dataset.count),"
        " g.querySelector('rect.flushed').getBoundingClientRect().height])"
    )
    for day, count, height in rows:
        assert (height > 0) == (count > 0), f"bar of {day} ({count}) is {height} px high"
    return {day: count for day, count, _ in rows}


def table_numbers(page, figure):
    page.locator(f"{figure} details summary").click()  # the numbers under the chart
    cells = page.locator(f"{figure} details tbody tr")
    assert cells.first.is_visible()
    return {
        row.get_attribute("data-day"): int(row.locator("td.count").inner_text())
        for row in cells.all()
    }


def test_staff_sees_the_charts_with_the_database_numbers(
    live_server, chromium, history_rows, standalone_buffer
):
    get_user_model().objects.create_superuser("boss", "boss@example.com", PASSWORD)
    posts = make_posts(3)
    today = stats.today()
    for days_ago, post, count in [(0, 0, 7), (0, 1, 3), (1, 0, 12), (9, 2, 4), (29, 1, 1)]:
        history_rows(posts[post].id, today - timedelta(days=days_ago), count)
    start = today - timedelta(days=29)
    site = {
        day.isoformat(): n
        for day, n in stats.filled(stats.daily_totals(start, today), start, today)
    }
    post_counts = stats.history([posts[0].id], start, today)[posts[0].id]
    post_series = {day.isoformat(): n for day, n in stats.filled(post_counts, start, today)}
    top_today = stats.top_posts(today, today)

    with chromium() as (page, errors):
        open_dashboard(page, live_server)
        chart = page.locator("#chart-site svg.impressions-chart-svg")
        assert chart.is_visible()
        box = chart.bounding_box()
        assert box["width"] > 600 and box["height"] > 150
        assert (
            page.locator("#chart-site svg title")
            .first.text_content()
            .startswith("Impressions per day, site-wide")
        )
        assert drawn_bars(page, "#chart-site") == site
        assert table_numbers(page, "#chart-site") == site
        assert page.locator("#chart-site figcaption").inner_text().startswith("27 impressions")
        top = page.locator("#top-today tbody tr")
        assert [
            (
                int(row.get_attribute("data-object-id")),
                int(row.locator("td.count .number").inner_text()),
            )
            for row in top.all()
        ] == top_today
        assert page.locator("#buffer-pending").is_visible()

        page.locator("#top-today tbody tr a").first.click()  # the top post's admin page
        page.wait_for_url(f"**/admin/casusult/post/{posts[0].id}/change/")
        figure = f"#chart-object-{posts[0].id}"
        assert page.locator(f"{figure} svg.impressions-chart-svg").is_visible()
        assert drawn_bars(page, figure) == post_series
        assert table_numbers(page, figure) == post_series
        assert errors == []


def test_the_buffer_panel_shows_entries_set_aside(live_server, chromium, standalone_buffer):
    get_user_model().objects.create_superuser("boss", "boss@example.com", PASSWORD)
    # What a flush leaves when something else wrote entries no database takes (test_set_aside.py).
    standalone_buffer.hset(
        keys.set_aside_key(3), mapping={"f1 abc:20261205": 1, "f1 7:20261399": 2}
    )
    with chromium() as (page, errors):
        open_dashboard(page, live_server)
        row = page.locator("#buffer-set-aside")
        assert row.is_visible()
        assert row.inner_text().startswith("2 entries in Redis that no database takes")
        assert "{imp:N}:set-aside" in row.inner_text()
        assert errors == []


# Each fits Post.__str__'s 60 characters, so a label printed as markup would be whole markup.
MARKUP = [
    "<img src=x onerror=\"window.__pwned='img'\">",
    "</title></text><svg onload=\"window.__pwned='svg'\">]]>",
    "\"><script>window.__pwned='script'</script>",
]


def test_markup_in_posts_and_names_is_shown_as_text_never_run(
    live_server, browser, history_rows, standalone_buffer
):
    """A post's words and its author's name are untrusted, and so is a counted object's str():
    the timeline, the dashboard (its top lists, data-* attributes, the charts' SVG), the ranked
    list and the admin pages show them as text. The browser ignores the Content-Security-Policy
    here: escaping alone must keep them inert, as it would on a project without that policy."""
    get_user_model().objects.create_superuser("boss", "boss@example.com", PASSWORD)
    author = get_user_model().objects.create_user(MARKUP[2], password="unused-pw")
    posts = [Post.objects.create(author=author, body=body) for body in MARKUP]
    for count, post in enumerate(posts, start=1):
        history_rows(post.id, stats.today(), count)
    context = browser.new_context(bypass_csp=True, user_agent=USER_AGENT)
    try:
        page = context.new_page()
        dialogs = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

        def shown(path):
            page.goto(f"{live_server.url}{path}")
            for summary in page.locator("details summary").all():
                summary.click()  # the charts' tables of numbers
            assert page.evaluate("window.__pwned") is None, path
            return page

        timeline = shown("/")  # counts an impression of each: pending, shown live below
        assert timeline.locator("article p").all_inner_texts() == MARKUP[::-1]
        assert MARKUP[2] in timeline.locator("article .meta").first.inner_text()
        open_dashboard(page, live_server)
        dashboard = shown("/admin/impressions/dashboard/")
        assert dashboard.locator("#top-today tbody tr a").all_inner_texts() == MARKUP[::-1]
        ranked = shown("/admin/impressions/dashboard/objects/")
        assert ranked.locator("#result_list tbody th a").all_inner_texts() == MARKUP[::-1]
        assert MARKUP[0] in shown("/admin/casusult/post/").locator("#result_list").inner_text()
        change = shown(f"/admin/casusult/post/{posts[1].id}/change/")
        assert change.locator(f"#chart-object-{posts[1].id} svg g.bar").count() == 30
        shown("/admin/impressions/flush/")
        assert dialogs == []
    finally:
        context.close()
