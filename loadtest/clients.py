"""The load test's browsing clients: many asyncio browsers (httpx) on the timeline, as people use it.

Logged-in demo users, anonymous visitors who keep their visitor cookie and some who keep no
cookies at all, HTML and JSON pages walked by their older-posts cursors, reloads, visitors who
leave and new ones who arrive (another browser: another User-Agent); each response's post ids are
noted with the viewer the server saw: the user; or the visitor cookie's id, from the UTC day after
the cookie was made; or else, on the cookie's first day and for clients without cookies, the
digest of (day, IP, User-Agent). Every client comes from 127.0.0.1 with a User-Agent of its own,
so the digest is named here by the User-Agent and the day. (A run across midnight UTC may see a
request counted under the day before or after the one it is noted under.)
"""

import asyncio
import json
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import httpx

from .expectations import Served

POST_ID_IN_HTML = re.compile(r'<article id="post-(\d+)">')
OLDER_IN_HTML = re.compile(r'<a rel="next" href="\?cursor=([^"&]+)"')
VISITOR_COOKIE = "visitor"
# What the visitor cookie holds before its signature: "<id>.<day made, YYYYMMDD>.<digest>".
VISITOR_PAYLOAD = re.compile(r"([A-Za-z0-9_-]+)\.(\d{8})\.[0-9a-f]+:")
CSRF_IN_HTML = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclass
class Results:
    """Everything the clients saw: served posts, latencies, statuses, errors, /readyz answers."""

    served: list = field(default_factory=list)
    latencies: list = field(default_factory=list)  # seconds, every timeline request
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # transport errors by class
    readiness: list = field(default_factory=list)  # (sent, received, status)
    # Set (monotonic s) when Redis is back after an outage: each anonymous browser leaves once
    # then, so new visitors arrive whose pairs can only count after the restart.
    turn_over_after: float = None
    logins: int = 0
    started: float = 0.0
    finished: float = 0.0

    @property
    def requests(self):
        return sum(self.statuses.values())

    @property
    def server_errors(self):
        return sum(count for status, count in self.statuses.items() if status >= 500)


class Browser:
    """One person at one browser: a cookie jar (or none), an optional login, pages and reloads."""

    def __init__(self, client, host, results, *, username=None, password=None, num_pages=1,
                 rng=None, keeps_cookies=True, number=0):  # fmt: skip
        self.client, self.host, self.results = client, host, results
        self.username, self.password, self.num_pages = username, password, num_pages
        self.rng = rng or random.Random()
        self.keeps_cookies = keeps_cookies or bool(username)
        self.number, self.visitor = number, 0
        self.cookies = {}
        self.depth = 1  # pages from the newest of the page shown last
        self.cursor = None  # the cursor of the page shown last (None: the newest)
        self.older = None  # its older-posts cursor (None: it was the last page)

    @property
    def user_agent(self):
        # One per visitor: the digest of a cookie-less client is its address and browser.
        return f"casusult-loadtest/1 (browser {self.number}; visitor {self.visitor})"

    def headers(self):
        # As the TLS-terminating load balancer forwards it; settings.prod trusts this header.
        headers = {"X-Forwarded-Proto": "https", "User-Agent": self.user_agent}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        return headers

    def keep_cookies(self, response):
        # By hand: the cookies are Secure and we speak HTTP to the app server, behind the "proxy".
        if not self.keeps_cookies:
            return
        for header in response.headers.get_list("set-cookie"):
            for name, morsel in SimpleCookie(header).items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    async def login(self):
        page = await self.client.get("/accounts/login/", headers=self.headers())
        self.keep_cookies(page)
        token = CSRF_IN_HTML.search(page.text)
        if page.status_code != 200 or token is None:
            raise RuntimeError(f"login page answered {page.status_code} without a CSRF token")
        headers = {
            **self.headers(),
            "Origin": f"https://{self.host}",
            "Referer": f"https://{self.host}/accounts/login/",
        }
        answer = await self.client.post(
            "/accounts/login/",
            data={
                "csrfmiddlewaretoken": token.group(1),
                "username": self.username,
                "password": self.password,
            },
            headers=headers,
        )
        self.keep_cookies(answer)
        if answer.status_code != 302:
            raise RuntimeError(f"login of {self.username} answered {answer.status_code}")
        self.results.logins += 1

    def next_page(self):
        """The cursor to fetch: the same page (a reload), the newest, or the next older one."""
        roll = self.rng.random()
        if roll < 0.3:
            return self.cursor, self.depth  # a reload
        if roll < 0.6 or self.older is None or self.depth >= self.num_pages:
            return None, 1  # back to the top
        return self.older, self.depth + 1

    async def view(self):
        """Fetch one timeline page (JSON or HTML) and note what this viewer was served."""
        cursor, depth = self.next_page()
        as_json = self.rng.random() < 0.7
        query = f"?{urlencode({'cursor': cursor})}" if cursor else ""
        path = f"/api/timeline/{query}" if as_json else f"/{query}"
        sent = time.monotonic()
        day = datetime.now(UTC).strftime("%Y%m%d")
        try:
            response = await self.client.get(path, headers=self.headers())
        except Exception as error:  # a transport failure fails the run (counted, reported)
            self.results.errors[type(error).__name__] += 1
            return
        received = time.monotonic()
        self.results.latencies.append(received - sent)
        self.results.statuses[response.status_code] += 1
        if response.status_code != 200:
            return
        self.keep_cookies(response)
        if as_json:
            body = json.loads(response.content)
            post_ids = [post["id"] for post in body["results"]]
            older = body["next"] and parse_qs(urlsplit(body["next"]).query)["cursor"][0]
        else:
            post_ids = [int(number) for number in POST_ID_IN_HTML.findall(response.text)]
            link = OLDER_IN_HTML.search(response.text)
            older = link and unquote(link.group(1))
        self.cursor, self.depth, self.older = cursor, depth, older or None
        # The cookie this request carried, or the one the server made from its digest.
        self.results.served.append(Served(self.viewer(day), post_ids, sent, received))

    def viewer(self, day):
        """The viewer the server counted (see the module docstring)."""
        if self.username:
            return f"user:{self.username}"
        made = VISITOR_PAYLOAD.match(self.cookies.get(VISITOR_COOKIE, ""))
        if made and made.group(2) != day:
            return f"visitor:{made.group(1)}"
        return f"anonymous:{self.user_agent}|{made.group(2) if made else day}"

    def leave(self):
        """An anonymous visitor goes; the next request is a new visitor at another browser."""
        self.cookies.clear()
        self.visitor += 1
        self.cursor, self.older, self.depth = None, None, 1


async def browse(make_client, host, results, stop, *, username, password, num_pages, seed,
                 think, keeps_cookies=True, number=0):  # fmt: skip
    rng = random.Random(seed)
    async with make_client() as client:
        browser = Browser(
            client, host, results,
            username=username, password=password, num_pages=num_pages, rng=rng,
            keeps_cookies=keeps_cookies, number=number,
        )  # fmt: skip
        if username:
            await browser.login()
        turned_over = False
        while True:  # one page at least: on a loaded machine a login may outlast the run
            if not username and not turned_over and results.turn_over_after is not None:
                browser.leave()
                turned_over = True
            await browser.view()
            if stop.is_set():
                break
            if not username and rng.random() < 0.05:
                browser.leave()
            if think:
                await asyncio.sleep(rng.uniform(0, think))


async def poll_readiness(make_client, results, stop, interval=0.25):
    """Probe /readyz every `interval` s until `stop`: its own loop, whatever the browsers wait for."""
    async with make_client() as client:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                status = (await client.get("/readyz")).status_code
            except Exception:
                status = 0
            results.readiness.append((sent, time.monotonic(), status))
            await asyncio.sleep(interval)


async def run_clients(base_url, *, clients, logged_in, duration, usernames, password, num_pages,
                      think=0.0, seed=1, during=None, cookieless=0.25):  # fmt: skip
    """Browse for `duration` seconds with `clients` browsers, `logged_in` of them logged in.

    Of the anonymous ones, the share `cookieless` keeps no cookies (crawler-like API clients,
    privacy modes): the server knows them by the digest of their address and User-Agent.

    `during(deadline, results)` is an optional coroutine run alongside (the Redis outage); the
    browsing and the /readyz probes go on until it has returned, past `duration` if need be.
    """
    host = base_url.split("://", 1)[1]

    def make_client():
        return httpx.AsyncClient(base_url=base_url, timeout=30.0)

    results = Results()
    results.started = time.monotonic()
    deadline = results.started + duration
    stop = asyncio.Event()

    async def end():
        if during is not None:
            await during(deadline, results)
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        stop.set()

    without_cookies = round((clients - logged_in) * cookieless)
    jobs = [
        browse(
            make_client, host, results, stop,
            username=usernames[number % len(usernames)] if number < logged_in else None,
            password=password,
            num_pages=num_pages, seed=seed * 1000 + number, think=think,
            keeps_cookies=number >= logged_in + without_cookies, number=number,
        )
        for number in range(clients)
    ]  # fmt: skip
    jobs += [poll_readiness(make_client, results, stop), end()]
    await asyncio.gather(*jobs)
    results.finished = time.monotonic()
    return results
