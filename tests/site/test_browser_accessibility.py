"""Accessibility (WCAG 2.2 AA) of the apps' own markup and the site's pages, in Debian's headless
Chromium: axe-core's checks of the WCAG rules, in the light and the dark theme.

Django's admin around the apps' markup is Django's to fix: on admin pages axe looks only at what
`impressions` and `queues` draw (each page's `include` selectors). axe-core comes from the npm
registry: `make axe` installs it into .local/ (tests/browser.py, AXE_CORE).
"""

import re
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from impressions import flush_now, stats
from impressions.flush import flush_pending
from impressions.recorder import record_impressions
from tests.browser import THEMES, Tab, axe_violations, new_context, with_axe
from tests.factories import make_posts
from tests.impressions.history_rows import add_impressions
from tests.queues import tasks as queue_tasks
from tests.queues.rq.support import rq_on, run_burst

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a11y-suite-pw"


@pytest.fixture
def boss():
    return get_user_model().objects.create_superuser("boss", "boss@example.com", PASSWORD)


@pytest.fixture
def site(buffer, boss):
    """Posts with a month of history and impressions not yet flushed (the dashboard's live
    marks); returns the post whose change page shows a chart."""
    posts = make_posts(25)
    today = stats.today()
    for age in range(0, 30, 3):
        for rank, post in enumerate(posts[-3:]):
            add_impressions(post.id, today - timedelta(days=age), (age * 7 + rank * 13) % 40 + 1)
    record_impressions("u:1", [post.id for post in posts[-3:]])
    return posts[-1]


def log_in(tab):
    tab.go("/admin/login/?next=/admin/")
    tab.page.fill("#id_username", "boss")
    tab.page.fill("#id_password", PASSWORD)
    tab.page.click("input[type=submit]")
    tab.page.wait_for_url("**/admin/")


# path -> the selectors of the apps' markup on it (None: the whole page is the site's own).
VISITOR_PAGES = {"/": None, "/accounts/login/": None}
STAFF_PAGES = {
    # The 7- and 90-day views draw the same markup, with more or fewer bars (4 s more of axe).
    "/admin/impressions/dashboard/": ["#content-main"],
    "/admin/impressions/dashboard/objects/?range=90d": ["#content-main"],
    "/admin/casusult/post/": [".object-tools", "#changelist-form p.help", "#result_list td"],
    "/admin/casusult/post/{post}/change/": ["#impressions"],
    "/admin/impressions/flush/": [".object-tools"],
    "/admin/queues/queuestatus/": ["#content-main"],
}


def shown_in_both_themes(tab, path, include):
    """axe's violations on `path` in the light theme, then the dark: the themes are CSS only
    (prefers-color-scheme), so switching the loaded page shows what loading it dark would."""
    tab.go(path)
    problems = []
    for theme in THEMES:
        tab.page.emulate_media(color_scheme=theme)
        problems += [f"{path} ({theme}): {line}" for line in axe_violations(tab.page, include)]
    return problems


def test_the_apps_pages_pass_axe_in_both_themes(live_server, browser, site):
    context = with_axe(new_context(browser, "desktop", "light"))
    problems = []
    try:
        tab = Tab(context, live_server.url)
        for path, include in VISITOR_PAGES.items():
            problems += shown_in_both_themes(tab, path, include)
        log_in(tab)
        for path, include in STAFF_PAGES.items():
            problems += shown_in_both_themes(tab, path.format(post=site.id), include)
    finally:
        context.close()
    assert not problems, "\n".join(problems)


@pytest.fixture
def rq_jobs(settings):
    """The RQ backend on the tests' RQ Redis with a finished, a queued and a scheduled job (an
    in-process burst ran the first); returns the finished job's id."""
    with rq_on(django_settings.RQ_REDIS_URL, settings):
        finished = queue_tasks.record_marker.enqueue("done")
        run_burst()
        queue_tasks.record_marker.enqueue("waiting")
        later = timezone.now() + timedelta(hours=1)
        queue_tasks.record_marker.using(run_after=later).enqueue("later")
        yield finished.id


def contrast(first, second):
    """WCAG's contrast ratio of two computed colours ("rgb(r, g, b)")."""

    def luminance(colour):
        channels = [int(part) / 255 for part in re.findall(r"\d+", colour)[:3]]
        r, g, b = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    light, dark = sorted([luminance(first), luminance(second)], reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_site_s_form_fields_are_outlined_at_3_to_1_in_both_themes(live_server, browser):
    """WCAG 1.4.11: a text field's border is what shows where to type (axe does not check it)."""
    context = new_context(browser, "phone", "light")
    found = {}
    try:
        tab = Tab(context, live_server.url)
        tab.go("/accounts/login/")
        for theme in THEMES:
            tab.page.emulate_media(color_scheme=theme)
            border, background = tab.page.evaluate(
                """() => [getComputedStyle(document.querySelector("#id_username")).borderTopColor,
                          getComputedStyle(document.body).backgroundColor]"""
            )
            found[theme] = round(contrast(border, background), 2)
    finally:
        context.close()
    assert min(found.values()) >= 3, found


def test_a_screen_reader_hears_a_chart_s_summary_once_and_what_plus_n_means(
    live_server, browser, site
):
    """The chart's group is named by its title alone (the figure's caption says the summary), and
    a top list's live mark says what it counts, not only "+1"."""
    context = new_context(browser, "desktop", "light")
    try:
        tab = Tab(context, live_server.url)
        log_in(tab)
        tab.go("/admin/impressions/dashboard/?range=7d")
        chart = tab.page.locator("#chart-site").aria_snapshot()
        count = tab.page.locator("#top-today tbody td.count").first.aria_snapshot()
    finally:
        context.close()
    assert chart.startswith("- figure "), chart  # named by its caption
    assert chart.count("impressions from ") == 2, chart  # the figure's name and its caption
    assert count.endswith('+1 not yet flushed"'), count


def test_flush_now_s_waiting_page_stays_put_then_goes_back_once_the_flush_ran(
    live_server, browser, boss, buffer, monkeypatch
):
    """WCAG 2.2.1: a page that reloads itself every second restarts a screen reader each time;
    the waiting page looks in the background and leaves only when there is something to show."""
    monkeypatch.setattr(flush_now, "WAIT_IN_REQUEST", 0)  # the waiting page at once
    monkeypatch.setattr(flush_now, "NO_WORKER_AFTER", 1)  # its note after a second, not 30
    record_impressions("u:1", [post.id for post in make_posts(1)])
    context = with_axe(new_context(browser, "desktop", "light"))
    try:
        tab = Tab(context, live_server.url)
        log_in(tab)
        tab.go("/admin/impressions/flush/")
        tab.page.click("button:has-text('Flush impressions now')")
        tab.page.wait_for_url("**/admin/impressions/flush/flush-now/*/?since=*")
        tab.page.wait_for_load_state()
        tab.page.evaluate("window.__loaded = true")  # gone if the page reloads
        assert axe_violations(tab.page) == []
        # A second later the page says no worker ran it: news, shown where it is, not reloaded.
        tab.page.locator("#flush-wait .errornote").wait_for(timeout=10_000)
        assert tab.page.evaluate("window.__loaded") is True
        assert tab.finish().problems == []  # its script and its look ran under the policy
        flush_pending(keep_schedule=True)  # what the worker does (the Dummy backend runs nothing)
        tab.page.wait_for_url(f"{live_server.url}/admin/impressions/flush/", timeout=10_000)
        message = tab.page.inner_text("ul.messagelist")
        assert "1 impression applied to 1 post in " in message, message
        # The script's look that met the redirect does not follow it (redirect: "manual"): the
        # browser reports that request as aborted; the page itself then goes there.
        aborted = (
            f"request failed: GET {live_server.url}/admin/impressions/flush/ (net::ERR_ABORTED)"
        )
        assert [problem for problem in tab.finish().problems if problem != aborted] == []
    finally:
        context.close()


# django-rq's pages, which `queues` puts in the admin: its breadcrumbs, styles and scripts.
RQ_PAGES = [
    "/admin/rq/queues/0/",
    "/admin/rq/queues/0/finished/",
    "/admin/rq/queues/0/failed/",
    "/admin/rq/queues/0/scheduled/",
    "/admin/rq/queues/0/{job}/",
]


def test_the_rq_dashboard_pages_pass_axe_in_both_themes(live_server, browser, boss, rq_jobs):
    context = with_axe(new_context(browser, "desktop", "light"))
    problems = []
    try:
        tab = Tab(context, live_server.url)
        log_in(tab)
        for path in RQ_PAGES:
            problems += shown_in_both_themes(tab, path.format(job=rq_jobs), ["#content"])
        tab.go("/admin/rq/queues/0/")
        # The checkboxes' names are the page's (translated there), not the script's.
        names = tab.page.evaluate(CHECKBOX_NAMES)
    finally:
        context.close()
    assert not problems, "\n".join(problems)
    assert names["given"] == [
        "Select all jobs on this page for an action",
        "Select this job for an action",
    ]
    assert names["toggle"] == names["given"][0]
    assert names["rows"] and all(
        name.startswith(names["given"][1] + " - ") for name in names["rows"]
    )


CHECKBOX_NAMES = """() => {
  const given = document.querySelector("script[data-select-all]").dataset;
  return {
    given: [given.selectAll, given.selectOne],
    toggle: document.getElementById("action-toggle").getAttribute("aria-label"),
    rows: [...document.querySelectorAll("tr input.action-select")].map((box) => box.getAttribute("aria-label")),
  };
}"""


# How much wider than the screen the page is laid out, and its elements that reach past the edge
# outside a box that scrolls them (for the message).
WIDER = """() => {
  const root = document.documentElement;
  const past = [...document.body.querySelectorAll("*")].filter((element) =>
    element.getBoundingClientRect().right > root.clientWidth + 0.5
    && !element.parentElement.closest(".rq-table-card, .rq-panel, .results"));
  return root.scrollWidth - root.clientWidth
    ? [root.scrollWidth - root.clientWidth, past.map((element) => element.outerHTML.slice(0, 80))]
    : 0;
}"""


def test_the_apps_pages_reflow_at_320_px(live_server, browser, site, rq_jobs):
    """WCAG 1.4.10: at 320 CSS px (1280 px zoomed to 400 %) no page scrolls sideways; a wide
    table may scroll in its own box."""
    context = browser.new_context(viewport={"width": 320, "height": 640})
    wider = {}
    try:
        tab = Tab(context, live_server.url)
        log_in(tab)
        for path in ["/", "/admin/impressions/dashboard/", "/admin/rq/queues/0/{job}/"]:
            tab.go(path.format(job=rq_jobs))
            wider[path] = tab.page.evaluate(WIDER)
    finally:
        context.close()
    assert wider == dict.fromkeys(wider, 0)
