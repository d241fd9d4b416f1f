"""Another site framing a counted page, in a real browser (Debian's headless Chromium, Playwright).

The site forbids framing (X-Frame-Options DENY, CSP frame-ancestors 'none'): the browser shows
nothing in such a frame, so it is no view. What Chromium sends for the timeline ('/', served by
live_server at http://localhost:PORT):

| the page                               | Sec-Fetch-Site | Sec-Fetch-Mode | Sec-Fetch-Dest |
| another site's <iframe> (127.0.0.1)    | cross-site     | navigate       | iframe         |
| a sibling origin's (localhost:another) | same-site      | navigate       | iframe         |
| the site's own page's <iframe>         | same-origin    | navigate       | iframe         |
| a link on another site, clicked        | cross-site     | navigate       | document       |
"""

import http.server
import threading

import pytest
from django.test import override_settings
from django.utils.csp import CSP

from impressions.recorder import pending_counts
from tests.browser import USER_AGENT
from tests.factories import make_posts

pytestmark = pytest.mark.django_db(transaction=True)


def framing_page(target):
    return (
        f'<!doctype html><title>elsewhere</title><iframe src="{target}"></iframe>'
        f'<a id="link" href="{target}">the timeline</a>'
    ).encode()


@pytest.fixture
def other_site(live_server):
    """{"cross-site": url, "same-site": url} of a page framing the timeline, each served by a
    plain HTTP server of its own: 127.0.0.1 is another site than live_server's localhost, and
    localhost on another port another origin of the same site. (A page Playwright made up would
    be a public address to Chromium, whose local network checks block its frames of localhost.)"""
    body = framing_page(f"{live_server.url}/")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    servers = {
        "cross-site": http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler),
        "same-site": http.server.ThreadingHTTPServer(("localhost", 0), Handler),
    }
    for server in servers.values():
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {
        name: f"http://{host}:{server.server_address[1]}/elsewhere.html"
        for (name, server), host in zip(servers.items(), ("127.0.0.1", "localhost"), strict=True)
    }
    for server in servers.values():
        server.shutdown()
        server.server_close()


@pytest.fixture
def tab(browser, live_server):
    """A page of a new context (a new anonymous visitor) that notes the loads of the timeline
    the browser blocked, and serves a same-origin framing page at /framing.html itself."""
    context = browser.new_context(user_agent=USER_AGENT)
    context.route(
        f"{live_server.url}/framing.html",
        lambda route: route.fulfill(content_type="text/html", body=framing_page("/")),
    )
    page = context.new_page()
    page.blocked = []
    page.on(
        "requestfailed",
        lambda request: (
            page.blocked.append(request.failure) if request.url == f"{live_server.url}/" else None
        ),
    )
    yield page
    context.close()


@pytest.fixture
def posts(standalone_buffer):
    return [post.id for post in make_posts(3)]


def counts(posts):
    return set(pending_counts(posts).values())


def shown_in_frame(page):
    """The framed timeline's posts, as the page shows them (0: the browser refused the frame)."""
    page.wait_for_load_state("load")
    [frame] = [frame for frame in page.frames if frame.parent_frame == page.main_frame]
    if not frame.url.startswith("http"):
        return 0
    return frame.locator("article").count()


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_a_frame_the_site_forbids_is_not_counted_and_a_link_from_there_is(
    tab, other_site, posts, site
):
    tab.goto(other_site[site])
    assert shown_in_frame(tab) == 0
    assert tab.blocked == ["net::ERR_BLOCKED_BY_RESPONSE"]
    assert counts(posts) == {0}
    tab.click("#link")  # a top-level navigation from that site: the posts are shown
    tab.wait_for_selector("article")
    assert counts(posts) == {1}


def test_a_same_origin_frame_counts_where_the_site_allows_it(tab, live_server, other_site, posts):
    policy = {"default-src": [CSP.SELF], "frame-ancestors": [CSP.SELF]}
    with override_settings(X_FRAME_OPTIONS="SAMEORIGIN", SECURE_CSP=policy):
        tab.goto(other_site["cross-site"])
        assert shown_in_frame(tab) == 0
        assert counts(posts) == {0}
        tab.goto(f"{live_server.url}/framing.html")
        assert shown_in_frame(tab) == 3
        assert counts(posts) == {1}
