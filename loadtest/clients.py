"""The load test's browsing clients: many asyncio browsers (httpx) on the timeline, as people use it.

Logged-in demo users and anonymous visitors (one cookie jar each), HTML and JSON pages, reloads,
visitors who leave and new ones who arrive; each response's post ids are noted with its viewer.
"""

import asyncio
import json
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from http.cookies import SimpleCookie

import httpx

from .expectations import Served

POST_ID_IN_HTML = re.compile(r'<article id="post-(\d+)">')
CSRF_IN_HTML = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclass
class Results:
    """Everything the clients saw: served posts, latencies, statuses, errors, /readyz answers."""

    served: list = field(default_factory=list)
    latencies: list = field(default_factory=list)  # seconds, every timeline request
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # transport errors by class
    readiness: list = field(default_factory=list)  # (sent, received, status)
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
    """One person at one browser: a cookie jar, an optional login, pages and reloads."""

    def __init__(self, client, host, results, *, username=None, password=None, num_pages=1,
                 rng=None):  # fmt: skip
        self.client, self.host, self.results = client, host, results
        self.username, self.password, self.num_pages = username, password, num_pages
        self.rng = rng or random.Random()
        self.cookies = {}
        self.page = 1

    def headers(self):
        # As the TLS-terminating load balancer forwards it; settings.prod trusts this header.
        headers = {"X-Forwarded-Proto": "https"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        return headers

    def keep_cookies(self, response):
        # By hand: the cookies are Secure and we speak HTTP to the app server, behind the "proxy".
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
        roll = self.rng.random()
        if roll < 0.3:
            return self.page  # a reload
        if roll < 0.6:
            return 1  # back to the top
        return self.rng.randint(1, self.num_pages)

    async def view(self):
        """Fetch one timeline page (JSON or HTML) and note what this viewer was served."""
        self.page = self.next_page()
        as_json = self.rng.random() < 0.7
        path = f"/api/timeline/?page={self.page}" if as_json else f"/?page={self.page}"
        viewer_before = self.viewer()
        sent = time.monotonic()
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
            post_ids = [post["id"] for post in json.loads(response.content)["results"]]
        else:
            post_ids = [int(number) for number in POST_ID_IN_HTML.findall(response.text)]
        # The server counted this request under the session it had or the one it just created.
        viewer = self.viewer() or viewer_before
        if viewer is None:
            self.results.errors["NoSessionCookie"] += 1
            return
        self.results.served.append(Served(viewer, post_ids, sent, received))

    def viewer(self):
        if self.username:
            return f"user:{self.username}"
        session = self.cookies.get("sessionid")
        return f"session:{session}" if session else None

    def leave(self):
        """An anonymous visitor goes; the next request is a new visitor with a new session."""
        self.cookies.clear()


async def browse(make_client, host, results, deadline, *, username, password, num_pages, seed,
                 think):  # fmt: skip
    rng = random.Random(seed)
    async with make_client() as client:
        browser = Browser(
            client, host, results,
            username=username, password=password, num_pages=num_pages, rng=rng,
        )  # fmt: skip
        if username:
            await browser.login()
        while time.monotonic() < deadline:
            await browser.view()
            if not username and rng.random() < 0.05:
                browser.leave()
            if think:
                await asyncio.sleep(rng.uniform(0, think))


async def poll_readiness(make_client, results, deadline, interval=0.25):
    async with make_client() as client:
        while time.monotonic() < deadline:
            sent = time.monotonic()
            try:
                status = (await client.get("/readyz")).status_code
            except Exception:
                status = 0
            results.readiness.append((sent, time.monotonic(), status))
            await asyncio.sleep(interval)


async def run_clients(base_url, *, clients, logged_in, duration, usernames, password, num_pages,
                      think=0.0, seed=1, during=None):  # fmt: skip
    """Browse for `duration` seconds with `clients` browsers, `logged_in` of them logged in.

    `during(deadline, results)` is an optional coroutine run alongside (the Redis outage).
    """
    host = base_url.split("://", 1)[1]

    def make_client():
        return httpx.AsyncClient(base_url=base_url, timeout=30.0)

    results = Results()
    results.started = time.monotonic()
    deadline = results.started + duration
    jobs = [
        browse(
            make_client, host, results, deadline,
            username=usernames[number % len(usernames)] if number < logged_in else None,
            password=password,
            num_pages=num_pages, seed=seed * 1000 + number, think=think,
        )
        for number in range(clients)
    ]  # fmt: skip
    jobs.append(poll_readiness(make_client, results, deadline))
    if during is not None:
        jobs.append(during(deadline, results))
    await asyncio.gather(*jobs)
    results.finished = time.monotonic()
    return results
