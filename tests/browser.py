"""Plain helpers of the real-browser tests (Debian's headless Chromium through Playwright).

`Tab` wraps one Playwright page and records, per visit, what a user would call broken: console
errors, uncaught exceptions, Content-Security-Policy violations and failed requests.
"""

import os
from dataclasses import dataclass, field

from screenshots import CHROMIUM_ARGS

CHROMIUM = os.environ.get("TEST_CHROMIUM", "/usr/bin/chromium")
# axe-core (the accessibility tests' rules), from the npm registry: `make axe` installs it there.
AXE_CORE = os.environ.get(
    "TEST_AXE_CORE",
    os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        ".local",
        "axe",
        "node_modules",
        "axe-core",
        "axe.min.js",
    ),
)
__all__ = [
    "AXE_CORE",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "THEMES",
    "VIEWPORTS",
    "Tab",
    "Visit",
    "axe_violations",
    "new_context",
    "with_axe",
]
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
THEMES = ("light", "dark")
# A desktop Chrome: HeadlessChrome is a bot to IMPRESSIONS_IGNORE_USER_AGENTS, and a visitor here
# must count as one.
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)
# Collects the Content-Security-Policy violations of each document (reported in the console too,
# but this names the directive and the blocked resource).
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`
    + ` at ${event.sourceFile || "?"}:${event.lineNumber}`);
});
"""


@dataclass
class Visit:
    """What one page load showed: its status, and every problem a user would notice."""

    url: str
    status: int | None = None
    problems: list = field(default_factory=list)


class Tab:
    """One page of a browser context, recording problems per visit."""

    def __init__(self, context, base_url):
        self.base_url = base_url
        self.page = context.new_page()
        self.visit = Visit("")
        self.allowed_statuses = {}  # url path -> the 4xx status it answers on purpose
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda error: self._problem(f"uncaught: {error}"))
        self.page.on("requestfailed", self._on_failed)
        self.page.on("response", self._on_response)

    def _problem(self, text):
        self.visit.problems.append(text)

    def _on_console(self, message):
        if message.type == "error":
            where = message.location.get("url", "")
            # The deliberate 4xx of a page load is reported as a console error too.
            if "Failed to load resource" in message.text and self._allowed_path(where):
                return
            self._problem(f"console: {message.text} ({where})")

    def _on_failed(self, request):
        self._problem(f"request failed: {request.method} {request.url} ({request.failure})")

    def _on_response(self, response):
        if response.status >= 400 and not self._allowed_path(response.url, response.status):
            self._problem(f"HTTP {response.status}: {response.request.method} {response.url}")

    def _allowed_path(self, url, status=None):
        path = url.removeprefix(self.base_url)
        allowed = self.allowed_statuses.get(path)
        return allowed is not None and (status is None or status == allowed)

    def go(self, path, expect=200):
        """Open `path`; returns the Visit (its status, its problems so far)."""
        if expect != 200:
            self.allowed_statuses[path] = expect
        self.visit = Visit(path)
        response = self.page.goto(self.base_url + path, wait_until="load")
        self.visit.status = response.status if response else None
        if self.visit.status != expect:
            self._problem(f"answered {self.visit.status}, not {expect}")
        return self.finish()

    def finish(self):
        """Collect what the document itself recorded (CSP violations) since the last call into
        the current visit."""
        for violation in self.page.evaluate("(window.__cspViolations || []).splice(0)"):
            self._problem(f"CSP: {violation}")
        return self.visit


# The WCAG 2.0, 2.1 and 2.2 rules of levels A and AA: axe-core's tags for them.
AXE_RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
# First the transitions a theme switch started (the admin's links fade to their new colour).
AXE_RUN = """async ([include, tags]) => {
  await Promise.all(document.getAnimations().map((animation) => animation.finished));
  const context = include ? {include: include.map((selector) => [selector])} : document;
  const missing = (include || []).filter((selector) => !document.querySelector(selector))
    .map((selector) => `nothing to check: no ${selector} on the page`);
  const results = await axe.run(context, {runOnly: {type: "tag", values: tags}});
  return missing.concat(results.violations.flatMap((violation) => violation.nodes.map((node) =>
    `${violation.id} (${violation.help}) at ${node.target.join(" ")}: `
    + node.failureSummary.replace(/\\s+/g, " "))));
}"""


def axe_violations(page, include=None):
    """axe-core's WCAG A/AA violations on the shown page, one line each; `include`: the selectors
    of the parts to check (None: the whole page). The page's context must have `with_axe`."""
    return page.evaluate(AXE_RUN, [include, AXE_RULES])


def with_axe(context):
    """Gives every page of `context` axe-core, as an init script: the pages' strict
    Content-Security-Policy refuses an added <script>, not what the browser itself runs."""
    if not os.path.isfile(AXE_CORE):
        raise FileNotFoundError(
            f"No axe-core at {AXE_CORE}: install it with `make axe` (npm), or point TEST_AXE_CORE"
            " at an axe.min.js."
        )
    context.add_init_script(path=AXE_CORE)
    return context


def new_context(browser, viewport, theme):
    context = browser.new_context(
        viewport=VIEWPORTS[viewport],
        color_scheme=theme,
        user_agent=USER_AGENT,
        device_scale_factor=1,
        is_mobile=viewport == "phone",
        has_touch=viewport == "phone",
    )
    context.add_init_script(CSP_LISTENER)
    return context
