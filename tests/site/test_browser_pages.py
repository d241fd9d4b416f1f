"""Every page a visitor and a staff user can reach, in Debian's headless Chromium, at 1280x800 and
390x844, light and dark: no console error, no CSP violation, no failed request but the deliberate
4xx, breadcrumbs as the admin's own, model names spelled right, no sideways scrolling on a phone.

One browser for the module, a context per viewport; each page loads once in it and is checked in
both themes (see Themes). An RQ worker runs beside the live server, as under `make run`, so
the queue pages show a real worker and real jobs.
"""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.tasks import TaskResultStatus, task_backends
from django.test import override_settings
from django.utils.csp import CSP

from casusult.models import Post
from impressions import stats
from impressions.flush import flush_pending
from impressions.recorder import record_impressions
from impressions.tasks import enqueue_flush
from tests.browser import THEMES, VIEWPORTS, Tab, Visit, new_context
from tests.factories import make_posts
from tests.impressions.history_rows import add_impressions
from tests.queues.rq.support import within

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "browser-suite-pw"
# What the admin index and its sidebar must call the models, app by app.
MODEL_NAMES = {
    "Authentication and Authorization": ["Groups", "Users"],
    "Casusult": ["Posts"],
    "Impressions": ["Dashboard", "Flushes"],
    "Queues": ["Queue status"],
}
MISSPELLED = re.compile(r"\b(flushs|statuss|statuses|dashboards)\b", re.IGNORECASE)


@pytest.fixture
def site(rq_site):
    """Posts for three timeline pages, a month of history, a flush in the ledger, a flush job
    the worker ran (its page lists its result), impressions pending in Redis, a scheduled flush
    job; returns the post, the flush and the finished job the pages show."""
    get_user_model().objects.create_superuser("boss", "boss@example.com", PASSWORD)
    posts = make_posts(45)
    Post.objects.filter(pk=posts[-1].pk).update(body="A long word: " + "x" * 120)
    today = stats.today()
    for age in range(0, 30, 3):  # enough history to draw and rank, quick to write
        for rank, post in enumerate(posts[-3:]):
            add_impressions(post.id, today - timedelta(days=age), (age * 7 + rank * 13) % 40 + 1)
    record_impressions("u:1", [post.id for post in posts[:20]])
    flush = flush_pending()
    finished = enqueue_flush(manual=True)
    backend = task_backends["default"]
    within(60, lambda: backend.get_result(finished.id).status == TaskResultStatus.SUCCESSFUL)
    assert backend.get_result(finished.id).status == TaskResultStatus.SUCCESSFUL
    record_impressions("u:2", [post.id for post in posts[-3:]])
    enqueue_flush(delay=300)
    return {"post": posts[-1], "flush": flush.flush_id, "finished_job": finished.id}


def visitor_visits(tab):
    """Opens each public page in turn, yielding its Visit while it is shown."""
    yield tab.go("/")
    older = tab.page.get_attribute("a[rel=next]", "href")
    yield tab.go("/" + older.lstrip("/"))
    yield tab.go("/?page=2", expect=400)
    yield tab.go("/?cursor=not-a-cursor", expect=400)
    yield tab.go("/no-such-page/", expect=404)
    yield tab.go("/accounts/login/")
    yield tab.go("/accounts/logout/")


def log_in(tab):
    visit = tab.go("/admin/login/?next=/admin/")
    tab.page.fill("#id_username", "boss")
    tab.page.fill("#id_password", PASSWORD)
    tab.page.click("input[type=submit]")
    tab.page.wait_for_url("**/admin/")
    return visit


# Pages the issue does not list, as a user trying things by hand would reach them.
MORE_STAFF_PATHS = [
    "/admin/auth/user/",
    "/admin/password_change/",
    "/admin/casusult/post/add/",
    "/admin/casusult/post/{post}/delete/",
    "/admin/impressions/dashboard/objects/?range=today",
    "/admin/rq/queues/0/empty/",
    "/admin/rq/queues/0/requeue-all/",
]


def staff_visits(tab, site):
    """Opens each staff page in turn, yielding its Visit while it is shown."""
    post, flush = site["post"], site["flush"]
    for path in [
        "/admin/",
        "/admin/impressions/dashboard/",
        "/admin/impressions/dashboard/?range=today",
        "/admin/impressions/dashboard/?range=12mo",
        "/admin/impressions/dashboard/objects/",
        "/admin/casusult/post/",
        f"/admin/casusult/post/{post.id}/change/",
        "/admin/impressions/flush/",
        f"/admin/impressions/flush/{flush}/change/",
        "/admin/queues/queuestatus/",
        "/admin/rq/",
        "/admin/rq/queues/0/",
        "/admin/rq/queues/0/details/",
        "/admin/rq/queues/0/finished/",
        "/admin/rq/queues/0/failed/",
        "/admin/rq/queues/0/started/",
        "/admin/rq/queues/0/deferred/",
        "/admin/rq/queues/0/scheduled/",
    ]:
        yield tab.go(path)
    job = tab.page.get_attribute("#result_list tbody a", "href")  # the scheduled flush
    yield tab.go(job)
    yield tab.go(f"/admin/rq/queues/0/{site['finished_job']}/")  # with its results' rows
    yield tab.go("/admin/rq/workers/0/")
    worker = tab.page.get_attribute("#changelist a[href*='/workers/0/']", "href")
    yield tab.go(worker)
    yield tab.go("/admin/impressions/dashboard/?from=2026-99-01", expect=400)
    yield tab.go(f"{job}delete/")
    for path in MORE_STAFF_PATHS:
        yield tab.go(path.format(post=post.id))


# The themes are CSS only (prefers-color-scheme in the site's and the admin's stylesheets; no
# script reads it at load), so a loaded page switched to the other scheme shows what loading it in
# that scheme would. Each page is looked at in the theme it loaded in, then switched to the other;
# the next page loads in that one. The two viewports start in different themes, so each page
# loads in light at one viewport and in dark at the other, and is looked at in all four.
FIRST_THEME = {"desktop": "dark", "phone": "light"}


class Themes:
    """The colour scheme a tab's pages are shown in, switched once per page."""

    def __init__(self, tab, first):
        self.tab, self.current = tab, first

    def __iter__(self):
        """Yields the theme the page is shown in, then switches to the other and yields that.
        What switching makes the page fetch or log goes to its Visit."""
        yield self.current
        [self.current] = [theme for theme in THEMES if theme != self.current]
        self.tab.page.emulate_media(color_scheme=self.current)
        yield self.current


def look(tab):
    """What the shown page looks like, in one round trip: its breadcrumbs (tag, background,
    colour, left padding, items; None without), how many CSS px it is wider than the viewport
    (0: no horizontal scrolling), the width it is laid out at, the height in CSS px of its
    charts' smallest shown label (None: no chart), and its background colour."""
    return tab.page.evaluate(
        """() => {
          const crumbs = document.querySelector("nav[aria-label=Breadcrumbs] .breadcrumbs");
          const style = crumbs && getComputedStyle(crumbs);
          const heights = [...document.querySelectorAll(".impressions-chart text")]
            .map((text) => text.getBoundingClientRect().height).filter((height) => height > 0);
          const root = document.documentElement;
          return {
            crumbs: crumbs && [crumbs.tagName, style.backgroundColor, style.color,
                               style.paddingLeft, crumbs.querySelectorAll("li").length],
            overflow: Math.max(root.scrollWidth, document.body.scrollWidth) - window.innerWidth,
            width: root.clientWidth,
            smallestChartText: heights.length ? Math.min(...heights) : null,
            background: getComputedStyle(document.body).backgroundColor,
          };
        }"""
    )


def model_names(tab):
    """{app caption: [model names]} of the admin index that is shown."""
    return tab.page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll("#content-main .module")].map(
            (module) => [module.querySelector("caption").textContent.trim(),
                         [...module.querySelectorAll("th[scope=row]")].map((th) => th.textContent.trim())]))"""
    )


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_every_page_works_in_a_real_browser(live_server, browser, site, viewport):
    width = VIEWPORTS[viewport]["width"]
    context = new_context(browser, viewport, FIRST_THEME[viewport])
    problems = []
    try:
        tab = Tab(context, live_server.url)
        themes = Themes(tab, FIRST_THEME[viewport])
        for visit in visitor_visits(tab):
            for theme in themes:
                shown = look(tab)
                if viewport == "phone" and shown["overflow"] > 0:
                    problems.append(
                        f"{visit.url} ({theme}): {shown['overflow']} px wider than the phone"
                    )
                if shown["width"] != width:
                    problems.append(
                        f"{visit.url} ({theme}): laid out {shown['width']} px wide on a {width} px screen"
                    )
            problems += [f"{visit.url}: {problem}" for problem in tab.finish().problems]

        log_in(tab)
        tab.go("/admin/auth/user/")  # Django's own page: the breadcrumbs to look like
        admin = {theme: look(tab) for theme in themes}
        # The switch took: Django's page is light in the one theme and dark in the other.
        assert admin["light"]["background"] != admin["dark"]["background"], admin
        for visit in staff_visits(tab, site):
            if visit.url == "/admin/" and (names := model_names(tab)) != MODEL_NAMES:
                problems.append(f"/admin/ names the models {names}, not {MODEL_NAMES}")
            if found := MISSPELLED.findall(tab.page.inner_text("body")):
                problems.append(f"{visit.url}: misspelled {sorted(set(found))}")
            dashboard = visit.url.startswith("/admin/impressions/dashboard/")
            for theme in themes:
                shown, admin_crumbs = look(tab), admin[theme]["crumbs"]
                crumbs = shown["crumbs"]
                # The index has no breadcrumbs, as in any Django admin.
                if visit.url != "/admin/" and (
                    crumbs is None or crumbs[:4] != admin_crumbs[:4] or crumbs[4] < 2
                ):
                    problems.append(
                        f"{visit.url} ({theme}): breadcrumbs {crumbs}, the admin's {admin_crumbs}"
                    )
                if viewport == "phone" and dashboard and shown["overflow"] > 0:
                    problems.append(
                        f"{visit.url} ({theme}): {shown['overflow']} px wider than the phone"
                    )
                if (smallest := shown["smallestChartText"]) is not None and smallest < 10:
                    problems.append(f"{visit.url} ({theme}): chart labels {smallest:.1f} px high")
            problems += [f"{visit.url}: {problem}" for problem in tab.finish().problems]
    finally:
        context.close()
    assert not problems, "\n".join(problems)


# A policy of nonces only, no 'self' (a "strict CSP"): Django's admin gives each of its
# stylesheets and scripts the nonce, so its pages work under it; the apps' pages must too.
NONCES_ONLY = {"script-src": [CSP.NONCE, CSP.STRICT_DYNAMIC], "style-src": [CSP.NONCE]}


def test_every_staff_page_works_under_a_policy_of_nonces_only(live_server, browser, site, settings):
    context = new_context(browser, "desktop", "light")
    problems = []
    try:
        with override_settings(SECURE_CSP={**settings.SECURE_CSP, **NONCES_ONLY}):
            tab = Tab(context, live_server.url)
            problems += [f"login: {problem}" for problem in log_in(tab).problems]
            for visit in staff_visits(tab, site):
                problems += [f"{visit.url}: {problem}" for problem in tab.finish().problems]
    finally:
        context.close()
    assert not problems, "\n".join(problems)


def test_logging_out_asks_to_confirm_then_logs_out(live_server, browser):
    get_user_model().objects.create_user("reader", password=PASSWORD)
    context = new_context(browser, "phone", "light")
    try:
        tab = Tab(context, live_server.url)
        problems = tab.go("/accounts/login/").problems
        tab.page.fill("#id_username", "reader")
        tab.page.fill("#id_password", PASSWORD)
        tab.page.click("main button[type=submit]")
        tab.page.wait_for_url(f"{live_server.url}/")
        visit = tab.go("/accounts/logout/")  # as typed, or followed from a link
        assert tab.page.inner_text("main h1") == "Log out?"
        tab.page.click("main button[type=submit]")
        tab.page.wait_for_url(f"{live_server.url}/")
        problems += visit.problems + tab.finish().problems
        assert tab.page.inner_text("nav.account") == "Log in"
    finally:
        context.close()
    assert problems == []


def todays_bar(tab):
    """(count, pending) of today's bar in the dashboard's site chart, as the page shows it."""
    bar = tab.page.locator("#chart-site g.bar.today")
    return int(bar.get_attribute("data-count")), int(bar.get_attribute("data-pending"))


def test_a_view_shows_on_the_dashboard_at_once_and_flush_now_shows_that_flush(
    live_server, browser, site
):
    staff_context = new_context(browser, "desktop", "light")
    visitor_context = new_context(browser, "phone", "light")
    try:
        staff = Tab(staff_context, live_server.url)
        log_in(staff)
        staff.go("/admin/impressions/dashboard/")
        before = todays_bar(staff)

        visitor = Tab(visitor_context, live_server.url)
        assert visitor.go("/").problems == []  # a visitor is served 20 posts: 20 impressions

        problems = staff.go("/admin/impressions/dashboard/").problems
        count, pending = todays_bar(staff)
        assert (count, pending) == (before[0] + 20, before[1] + 20)  # before any flush
        assert staff.page.locator("#range-pending").inner_text().startswith(f"{pending} of them")

        staff.visit = Visit("Flush now")
        staff.page.click("button:has-text('Flush now')")
        message = staff.page.locator("ul.messagelist li.success")
        message.wait_for(timeout=60_000)  # the worker ran it; the dashboard is shown again
        problems += staff.finish().problems
        assert staff.page.url.endswith("/admin/impressions/dashboard/")
        text = message.inner_text()
        flush_id = re.match(r"Flush (\S+): (\d+) impressions? applied to \d+ posts? in ", text)
        assert flush_id, text
        assert int(flush_id[2]) == pending  # what was pending, and no more
        last = staff.page.locator("#last-flush a").get_attribute("href")  # the ledger's row
        assert last == f"/admin/impressions/flush/{flush_id[1]}/change/"
        assert todays_bar(staff) == (count, 0)  # the same count, all of it in the history now
    finally:
        staff_context.close()
        visitor_context.close()
    assert problems == []
