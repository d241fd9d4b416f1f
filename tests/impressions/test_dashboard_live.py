"""What Plausible and django-hitcount users expect of the dashboard: live numbers, the range's
total and change, quick ranges, every post ranked with its CSV, each post's counts by its chart;
against PostgreSQL and Redis."""

import re
from datetime import timedelta
from html import unescape

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

import impressions
from casusult.models import Post
from impressions import keys, ranking, stats
from impressions.flush import flush_pending
from impressions.ranges import quick_range
from impressions.recorder import record_impressions
from tests.factories import make_posts

from .history_rows import add_many
from .support import fail_a_flush_after_its_snapshot, scheduled_flushes

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/impressions/dashboard/"
OBJECTS = "/admin/impressions/dashboard/objects/"


def bar(html, chart_id, day):
    """(count, pending, classes) of one day's bar in a chart."""
    start = html.index(f'id="chart-{chart_id}"')
    match = re.search(
        rf'<g class="(bar[^"]*)" role="img" data-day="{day.isoformat()}" data-count="(\d+)"'
        r' data-pending="(\d+)">\s*<title>([^<]*)</title>',
        html[start:],
    )
    return int(match[2]), int(match[3]), match[1], match[4]


def test_an_impression_recorded_now_shows_at_once_marked_not_yet_flushed(
    superuser_client, history_rows, standalone_buffer
):
    posts = make_posts(3)
    today = stats.today()
    history_rows(posts[0].id, today, 5)
    history_rows(posts[1].id, today, 4)
    for viewer in range(3):  # posts[1] passes posts[0] with what is still in Redis
        record_impressions(f"u:{viewer}", [posts[1].id, posts[2].id])
    html = superuser_client.get(DASHBOARD).content.decode()
    count, pending, classes, title = bar(html, "site", today)
    assert (count, pending, classes) == (15, 6, "bar today")
    assert title.endswith(": 15 impressions so far today, 6 of them not yet flushed")
    assert 'id="range-total">15</strong>' in html
    assert 'id="range-pending">6 of them not yet flushed' in html
    top = html[html.index('id="top-today"') : html.index("</table>", html.index('id="top-today"'))]
    rows = re.findall(
        r'data-object-id="(\d+)" data-pending="(\d+)">.*?class="number">(\d+)<', top, re.S
    )
    # Only the posts the history ranks are shown, with their live counts, ranked again.
    assert rows == [(str(posts[1].id), "3", "7"), (str(posts[0].id), "0", "5")]
    assert '+3<span class="visually-hidden"> not yet flushed</span></small>' in top

    flush_pending()  # now in the history: the same numbers, none pending
    html = superuser_client.get(DASHBOARD).content.decode()
    assert bar(html, "site", today)[:2] == (15, 0)
    assert "not yet flushed" not in html.split('id="range-total"', 1)[1].split("</section>", 1)[0]


def test_the_range_total_and_its_change_against_the_period_before(
    staff_client, history_rows, standalone_buffer
):
    post = make_posts(1)[0]
    today = stats.today()
    history_rows(post.id, today - timedelta(days=2), 30)  # this week
    history_rows(post.id, today - timedelta(days=9), 20)  # the week before
    html = staff_client.get(f"{DASHBOARD}?range=7d").content.decode()
    assert 'id="range-total">30</strong> impressions in the last 7 days' in html
    change = html.split('id="range-change">', 1)[1].split("</p>", 1)[0]
    assert "+50% against 20 in the period before" in change
    assert "&#9650;" in change  # up
    html = staff_client.get(f"{DASHBOARD}?range=today").content.decode()
    assert "none in the period before" in html
    # 12 months, this month and the eleven before, is compared with as many days before it.
    start = quick_range("12mo", today).start
    length = (today - start).days + 1
    history_rows(post.id, start - timedelta(days=1), 15)  # the last day of the period before
    history_rows(post.id, start - timedelta(days=length), 15)  # its first day
    history_rows(post.id, start - timedelta(days=length + 1), 1000)  # a day before that
    html = staff_client.get(f"{DASHBOARD}?range=12mo").content.decode()
    change = " ".join(html.split('id="range-change">', 1)[1].split("</p>", 1)[0].split())
    before = f"{start - timedelta(days=length)} to {start - timedelta(days=1)}"
    assert f"+67% against 30 in the period before ({before})" in change  # 50 (30 + 20) vs 30


def test_quick_ranges_and_long_ranges_by_month(staff_client, history_rows, standalone_buffer):
    post = make_posts(1)[0]
    today = stats.today()
    history_rows(post.id, today - timedelta(days=40), 8)
    html = staff_client.get(f"{DASHBOARD}?range=12mo").content.decode()
    bars = re.findall(r'<g class="bar[^"]*" role="img" data-day="([\d-]+)"', html)
    assert len(bars) == 12 and bars[-1] == today.replace(day=1).isoformat()
    assert "Impressions per month, site-wide" in html
    assert '<a href="?range=12mo" class="selected" aria-current="page">12 months</a>' in html
    for key, count in [("today", 1), ("yesterday", 1), ("7d", 7), ("90d", 90)]:
        html = staff_client.get(f"{DASHBOARD}?range={key}").content.decode()
        assert len(re.findall(r'<g class="bar[^"]*" role="img"', html)) == count, key


def test_a_refused_range_keeps_what_was_typed(staff_client, standalone_buffer):
    response = staff_client.get(f"{DASHBOARD}?from=2026-02-30&to=2026-03-04")
    assert response.status_code == 400
    html = response.content.decode()
    assert 'name="from" value="2026-02-30"' in html
    assert 'name="to" value="2026-03-04"' in html
    assert '<label for="range-from">From</label>' in html
    assert "Showing the last 30 days instead." in html


def test_a_new_site_says_what_to_do(staff_client, standalone_buffer):
    posts = make_posts(2)
    html = staff_client.get(DASHBOARD).content.decode()
    assert 'id="dashboard-help"' in html
    assert "No impressions in the last 30 days yet." in html
    assert 'href="/">the site</a>' in html
    record_impressions("u:1", [post.id for post in posts])
    html = staff_client.get(DASHBOARD).content.decode()
    assert "None of these is in the history yet: the next flush writes them (at " in html
    assert 'id="range-total">2</strong>' in html


def test_a_past_range_without_impressions_says_so_plainly(
    staff_client, history_rows, standalone_buffer
):
    post = make_posts(1)[0]
    today = stats.today()
    history_rows(post.id, today, 3)  # today's impressions are not yesterday's
    day = today - timedelta(days=5)
    for query, during, days in [
        ("range=yesterday", "yesterday", "that day"),
        (f"from={day}&to={day}", f"on {day}", "that day"),
        (
            f"from={day}&to={day + timedelta(days=2)}",
            f"from {day} to {day + timedelta(days=2)}",
            "these days",
        ),
    ]:
        html = staff_client.get(f"{DASHBOARD}?{query}").content.decode()
        assert f'id="range-total">0</strong> impressions {during}' in html, query
        help_text = html.split('id="dashboard-help">', 1)[1].split("</p>", 1)[0]
        assert f"No impressions {during}." in help_text
        assert f"The history holds none for {days}." in help_text
        assert "the site" not in help_text and "come back" not in help_text
        assert f"Every post by impressions {during}</a>" in html
        objects = staff_client.get(f"{OBJECTS}?{query}").content.decode()
        assert f"0 posts had impressions {during}, most first." in objects
        assert f"No impressions {during}.</td>" in objects
    old = today - timedelta(days=500)  # before IMPRESSIONS_HISTORY_DAYS (400)
    html = staff_client.get(f"{DASHBOARD}?from={old}&to={old}").content.decode()
    assert "(<code>IMPRESSIONS_HISTORY_DAYS</code>): none is shown before." in html
    html = staff_client.get(f"{DASHBOARD}?range=7d").content.decode()
    assert 'id="range-total">3</strong> impressions in the last 7 days' in html
    assert 'id="dashboard-help"' not in html


def test_before_the_first_flush_the_top_lists_say_the_pending_ones_come_with_it(
    staff_client, history_rows, standalone_buffer
):
    posts = make_posts(10)
    for viewer in range(2):
        record_impressions(f"u:{viewer}", [post.id for post in posts])
    html = staff_client.get(DASHBOARD).content.decode()
    assert 'id="range-pending">20 of them not yet flushed' in html
    waiting = "No flushed impressions yet: the 20 pending ones reach this list with the next flush."
    for name in ("today", "this-week", "this-month", "in-the-range"):
        top = html.split(f'id="top-{name}"', 1)[1].split("</table>", 1)[0]
        assert f'<td colspan="3">{waiting}</td>' in top, name
    assert "</small>: of them, not yet flushed" not in html  # no row has a +N
    html = staff_client.get(f"{DASHBOARD}?range=yesterday").content.decode()
    top = html.split('id="top-in-the-range"', 1)[1].split("</table>", 1)[0]
    assert '<td colspan="3">No impressions in the range.</td>' in top

    flush_pending()
    history_rows(posts[0].id, stats.today() - timedelta(days=1), 4)
    html = staff_client.get(DASHBOARD).content.decode()
    assert "No flushed impressions yet" not in html
    assert "</small>: of them, not yet flushed" not in html  # nothing pending: no +N, no note
    record_impressions("u:3", [posts[0].id])
    html = staff_client.get(DASHBOARD).content.decode()
    assert "</small>: of them, not yet flushed" in html  # now a row has its +1


def test_the_next_flush_is_when_the_schedule_says(superuser_client, standalone_buffer):
    posts = make_posts(1)
    html = superuser_client.get(DASHBOARD).content.decode()
    assert (
        'id="next-flush">none scheduled: the next impression schedules one, 5 min after it' in html
    )
    record_impressions("u:1", [posts[0].id])
    scheduled_at = float(standalone_buffer.get(keys.guard_key()))  # by the record script
    assert 0 <= record_time(standalone_buffer) - scheduled_at < 60
    html = superuser_client.get(DASHBOARD).content.decode()
    assert re.search(r'id="next-flush">at [\d-]+ [\d:]+, <span>in (4|5) min</span>', html)


def test_pending_impressions_whose_flush_did_not_run_are_a_warning(
    superuser_client, standalone_buffer
):
    posts = make_posts(3)
    for viewer in range(2):
        record_impressions(f"u:{viewer}", [post.id for post in posts])
    # No worker ran the flush: the schedule guard lapsed (FLUSH_DELAY + 60 s after it was taken).
    standalone_buffer.delete(keys.guard_key())
    html = superuser_client.get(DASHBOARD).content.decode()
    next_flush = next_flush_text(html)
    assert next_flush == (
        '<span class="impressions-unavailable">none scheduled, yet 6 impressions are pending</span>:'
        " their flush has not run. Is a worker running (<code>manage.py runworker</code>)? The next"
        " impression schedules one; <strong>Flush now</strong> applies them at once."
    )
    flush_pending()  # nothing pending: the usual words
    assert next_flush_text(superuser_client.get(DASHBOARD).content.decode()) == USUAL


def test_impressions_left_in_a_failed_flush_s_snapshots_with_no_flush_coming_are_a_warning(
    superuser_client, standalone_buffer, monkeypatch
):
    posts = make_posts(2)
    for viewer in range(2):
        record_impressions(f"u:{viewer}", [post.id for post in posts])
    fail_a_flush_after_its_snapshot(monkeypatch)
    standalone_buffer.delete(keys.guard_key())  # its guard lapsed: no flush is coming
    status = impressions.buffer_status()
    assert (status.pending_impressions, status.in_snapshots, status.flush_scheduled) == (
        0,
        4,
        False,
    )
    html = superuser_client.get(DASHBOARD).content.decode()
    next_flush = next_flush_text(html)
    # Before: "none scheduled: the next impression schedules one, 5 min after it", as if nothing
    # waited.
    assert next_flush == (
        '<span class="impressions-unavailable">none scheduled, yet 4 impressions wait in the'
        " snapshots of a flush that did not finish</span>: a flush took them and did not finish"
        " (it failed, or it is running now: see the last flush below), and no flush is scheduled"
        " to apply them; they wait until the next impression schedules one, or <strong>Flush"
        " now</strong> applies them at once. If a flush fails again, its ledger row and the flush"
        " log say why."
    )
    flush_pending()  # the snapshot applied: the usual words
    assert next_flush_text(superuser_client.get(DASHBOARD).content.decode()) == USUAL


USUAL = "none scheduled: the next impression schedules one, 5 min after it"


def next_flush_text(html):
    """The dashboard's "Next flush" entry, its white space made single spaces."""
    return " ".join(html.split('id="next-flush">', 1)[1].split("</dd>", 1)[0].split())


def record_time(client):
    seconds, micros = client.time()
    return seconds + micros / 1e6


def test_a_flush_by_hand_leaves_the_scheduled_one_for_what_comes_after(standalone_buffer):
    posts = make_posts(2)
    record_impressions("u:1", [posts[0].id])  # schedules the flush of the window
    assert len(scheduled_flushes()) == 1
    flush_pending(keep_schedule=True)  # "Flush now"
    assert standalone_buffer.exists(keys.guard_key())
    record_impressions("u:2", [posts[1].id])
    assert len(scheduled_flushes()) == 1  # the one scheduled takes these too: none more
    report = flush_pending()  # the scheduled flush
    assert report.impressions_applied == 1
    assert not standalone_buffer.exists(keys.guard_key())
    record_impressions("u:3", [posts[1].id])
    assert len(scheduled_flushes()) == 2  # and the next impression schedules again


def test_every_post_by_impressions_a_page_at_a_time_and_as_csv(
    superuser_client, history_rows, standalone_buffer
):
    posts = make_posts(60)
    today = stats.today()
    for rank, post in enumerate(posts):
        history_rows(post.id, today - timedelta(days=rank % 3), 100 - rank)
    history_rows(posts[0].id, today - timedelta(days=45), 1000)  # outside the 30 days
    Post.objects.filter(pk=posts[0].pk).update(body="The most seen post")
    Post.objects.filter(pk=posts[1].pk).update(body='=HYPERLINK("https://evil.example/","x")')
    record_impressions("u:1", [posts[59].id])
    html = superuser_client.get(OBJECTS).content.decode()
    rows = re.findall(r'<tr data-object-id="(\d+)">\s*<td>(\d+)</td>', html)
    assert [int(rank) for _, rank in rows] == list(range(1, 51))
    assert [int(object_id) for object_id, _ in rows] == [post.id for post in posts[:50]]
    assert "60 posts had impressions in the last 30 days" in html
    assert (
        f'href="/admin/casusult/post/{posts[0].id}/change/#impressions">The most seen post' in html
    )
    assert 'rel="next"' in html and 'rel="prev"' not in html
    second = superuser_client.get(f"{OBJECTS}?range=30d&page=2").content.decode()
    rows = re.findall(r'<tr data-object-id="(\d+)">\s*<td>(\d+)</td>', second)
    assert [int(rank) for _, rank in rows] == list(range(51, 61))
    assert 'rel="next"' not in second and 'rel="prev"' in second
    assert '<td class="count pending">+1</td>' in second  # the last post's, still in Redis
    assert superuser_client.get(f"{OBJECTS}?page=0").status_code == 400

    response = superuser_client.get(f"{OBJECTS}csv/?range=30d")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0] == "rank,object_id,object,impressions"
    assert lines[1] == f"1,{posts[0].id},The most seen post,100"
    # A spreadsheet shows the name as text, never runs it as a formula.
    assert lines[2] == f'2,{posts[1].id},"\'=HYPERLINK(""https://evil.example/"",""x"")",99'
    assert lines[-1] == f"60,{posts[59].id},post 59,41"
    assert len(lines) == 61
    assert superuser_client.get(f"{OBJECTS}csv/?range=1y").status_code == 400


def test_a_page_past_the_end_or_not_a_number_shows_a_page_that_is_there(
    staff_client, history_rows, standalone_buffer
):
    posts = make_posts(3)
    for post in posts:
        history_rows(post.id, stats.today(), 2)
    response = staff_client.get(f"{OBJECTS}?page=1")
    assert response.status_code == 200
    assert "Page 1 of 1</span>" in response.content.decode()
    huge = "9" * 5000  # more digits than int() takes
    for page in ["1000", "99999999999999999999", huge]:
        response = staff_client.get(f"{OBJECTS}?range=7d&page={page}")
        assert response.status_code == 400, page[:30]
        html = response.content.decode()
        note = html.split('id="page-error">', 1)[1].split("</p>", 1)[0]
        assert note == (
            f"Page {page[:20]} is past the end: 3 posts had impressions in the last 7 days, 50 a"
            ' page. Showing <a href="?range=7d&amp;page=1">page 1, the last</a>.'
        )
        assert len(re.findall(r'<tr data-object-id="(\d+)">', html)) == 3  # the last page's
    for page in ["abc", "0", "00", "-1", "1.5", "\u0661"]:  # \u0661: an Arabic-Indic digit
        response = staff_client.get(f"{OBJECTS}?page={page}")
        assert response.status_code == 400, page
        html = unescape(response.content.decode())
        assert f"page must be a whole number from 1, not {page!r}. Showing page 1." in html
        assert "Showing the last 30 days instead." not in html  # the range is fine
        assert len(re.findall(r'<tr data-object-id="(\d+)">', html)) == 3
    response = staff_client.get(f"{OBJECTS}?range=yesterday&page=2")
    assert response.status_code == 400
    assert "Page 2 is past the end: 0 posts had impressions yesterday" in response.content.decode()
    # A range of days the history no longer keeps has no row to read: past the end all the same.
    old = stats.today() - timedelta(days=400)
    with override_settings(IMPRESSIONS_HISTORY_DAYS=30):
        response = staff_client.get(f"{OBJECTS}?from={old}&to={old}&page=2")
    assert response.status_code == 400
    assert "Page 2 is past the end" in response.content.decode()


def history_sums(queries):
    """The statements of `queries` that sum the history per object."""
    return [q["sql"] for q in queries.captured_queries if "GROUP BY object_id" in q["sql"]]


def every_third_day():
    """60 posts, the first most seen, with impressions every third day of the last 30 (the rows
    of history_rows, in bulk inserts: one by one, thousands of statements took 5-10 s)."""
    posts = make_posts(60)
    today = stats.today()
    add_many(
        (post.id, today - timedelta(days=days_ago), 100 - rank)
        for rank, post in enumerate(posts)
        for days_ago in range(0, 30, 3)
    )
    return posts


def test_a_ranked_page_sums_the_range_once_whole_weeks_from_their_rollup_rows(
    staff_client, standalone_buffer
):
    # At 1,000,000 posts and 10 days (10,000,000 daily rows) each page took 10 s: one GROUP BY
    # over every daily row of the range for the page, another for the count beside it.
    posts = every_third_day()
    for page in ("1", "2"):
        with CaptureQueriesContext(connection) as queries:
            response = staff_client.get(f"{OBJECTS}?range=30d&page={page}")
        assert response.status_code == 200
        assert "60 posts had impressions in the last 30 days" in response.text
        [sums] = history_sums(queries)  # the page and the count in one statement
        # The last 30 days hold at least three whole ISO weeks: read from their week rows.
        assert "impressions_period" in sums
    ranks = re.findall(r'<tr data-object-id="(\d+)">\s*<td>(\d+)</td>', response.text)
    assert [(int(i), int(r)) for i, r in ranks] == [
        (p.id, 51 + n) for n, p in enumerate(posts[50:])
    ]
    # Past the end: the count alone, then the last page.
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(f"{OBJECTS}?range=30d&page=3")
    assert response.status_code == 400
    assert len(history_sums(queries)) == 3


def test_the_csv_of_every_object_streams_the_pages_sum(staff_client, standalone_buffer):
    # It summed every daily row of the range: 21 s to its first line at 1,000,000 posts.
    posts = every_third_day()
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(f"{OBJECTS}csv/?range=30d")
        lines = b"".join(response.streaming_content).decode().splitlines()
    [sums] = history_sums(queries)
    assert "impressions_period" in sums
    assert [line.split(",")[:2] for line in lines[1:]] == [
        [str(rank), str(post.id)] for rank, post in enumerate(posts, start=1)
    ]


def test_the_post_page_shows_its_counts_beside_its_chart(
    superuser_client, history_rows, standalone_buffer
):
    post = make_posts(1)[0]
    today = stats.today()
    record_impressions("u:1", [post.id])
    flush_pending()  # 1 in the database, on today
    history_rows(post.id, today - timedelta(days=3), 4)
    record_impressions("u:2", [post.id])
    record_impressions("u:3", [post.id])
    html = superuser_client.get(f"/admin/casusult/post/{post.id}/change/").content.decode()
    assert 'id="impressions-flushed">1</dd>' in html
    assert 'id="impressions-pending">2</dd>' in html
    assert 'id="impressions-recent">7 (with those not yet flushed)</dd>' in html
    assert bar(html, f"object-{post.id}", today)[:2] == (3, 2)


def test_the_post_list_links_each_row_to_its_chart_and_filters_by_date(
    superuser_client, standalone_buffer
):
    old, new = make_posts(2)
    Post.objects.filter(pk=old.pk).update(created_at=old.created_at - timedelta(days=400))
    html = superuser_client.get("/admin/casusult/post/").content.decode()
    for post in (old, new):
        assert f'href="/admin/casusult/post/{post.id}/change/#impressions">30 days</a>' in html
    assert "By created at" in html  # the date filter
    past_week = re.search(r'<a href="(\?created_at__gte=[^"]+)">Past 7 days</a>', html)[1]
    html = superuser_client.get(f"/admin/casusult/post/{unescape(past_week)}").content.decode()
    assert f"/admin/casusult/post/{new.id}/change/" in html
    assert f"/admin/casusult/post/{old.id}/change/" not in html


@pytest.mark.django_db(transaction=True)
def test_the_csv_of_every_object_holds_no_transaction_while_its_client_reads():
    # A download goes at the client's pace (40 s for 1,000,000 objects on a fast one): a
    # transaction left open meanwhile would hold back vacuum, and a database's
    # idle_in_transaction_session_timeout would cut the download. The ranking is read in one
    # snapshot, then its rows fetched outside any transaction, as they were sent.
    posts = every_third_day()
    today = stats.today()
    rows = ranking.iter_ranked(today - timedelta(days=29), today, chunk=7)
    ranked = [next(rows)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT now() = statement_timestamp()")  # equal: a statement of its own
        assert cursor.fetchone() == (True,)
    assert not connection.in_atomic_block
    ranked += rows
    assert [(rank, object_id) for rank, object_id, _ in ranked] == [
        (rank, post.id) for rank, post in enumerate(posts, start=1)
    ]
    assert ranked[0][2] == 100 * 10


@pytest.mark.django_db(transaction=True)
def test_a_download_cut_short_leaves_no_cursor_open():
    every_third_day()
    today = stats.today()
    rows = ranking.iter_ranked(today - timedelta(days=29), today, chunk=7)
    next(rows)
    rows.close()  # the client went away
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_cursors")
        assert cursor.fetchone() == (0,)
