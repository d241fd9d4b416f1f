"""The load test, short: gunicorn + runworker on SQS + a private Redis, exact counts after a flush.

`make loadtest` runs the long version (50 clients for 60 s, with and without a Redis outage).
"""

import os
import re
from datetime import UTC, datetime

from casusult.loadtest import Browser, Outage, Results, Served, compare, expected_counts
from impressions.viewers import make_visitor_cookie


def loadtest_database_url():
    """Next to the test database's name, never it: the load test seeds and writes its own."""
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    return f"{base.rsplit('/', 1)[0]}/{base.rsplit('/', 1)[1] or 'test'}_loadtest"


def run_loadtest(manage, *args):
    result = manage(
        "loadtest", "--users", "5", "--posts", "200", *args,
        env={"DATABASE_URL": loadtest_database_url()}, timeout=300,
    )  # fmt: skip
    print(result.stdout)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr[-3000:]}"
    assert result.stdout.rstrip().splitlines()[-1] == "PASS"
    return result.stdout


def test_short_load_counts_exactly(manage):
    output = run_loadtest(manage, "--clients", "10", "--duration", "5")
    requests = int(re.search(r"requests: (\d+)", output).group(1))
    assert requests >= 10  # every client got at least one page, even on a loaded machine
    assert "5xx: 0" in output
    assert re.search(r"impressions expected: (\d+); in the database: \1 ", output)


def test_short_load_survives_a_redis_outage(manage):
    output = run_loadtest(manage, "--clients", "10", "--duration", "10", "--redis-outage")
    assert "[ok] /readyz answered 503 throughout the outage" in output
    assert "[ok] counting resumed without a restart" in output


# The arithmetic on its own, with made-up timings.


def served(viewer, posts, sent, received=None):
    return Served(viewer, posts, sent, sent + 0.01 if received is None else received)


def test_distinct_pairs_count_once():
    expectation = expected_counts(
        [served("user:a", [1, 2], 0), served("user:a", [1, 2], 1), served("session:x", [2], 2)]
    )
    assert expectation.lower == expectation.upper == {1: 1, 2: 2}
    assert compare(expectation, {1: 1, 2: 2}) == {}
    assert compare(expectation, {1: 2, 2: 2}) == {1: (1, 2, 1)}  # a double
    assert compare(expectation, {1: 1, 2: 1}) == {2: (2, 1, 2)}  # a loss


def test_outage_classes_bound_the_counts():
    outage = Outage(stop_requested=10, stopped=11, start_requested=20, started=21)
    expectation = expected_counts(
        [
            served("user:a", [1], 5),  # up: must count
            served("user:b", [1], 12),  # down: cannot count
            served("user:b", [2], 10.5),  # at the stop: may count
            served("user:c", [3], 20.5),  # at the start: may count
            served("user:c", [3], 25),  # up again: must count, once
            served("user:d", [4], 15),  # down ...
            served("user:d", [4], 30),  # ... then up: counts once
        ],
        outage,
    )
    assert expectation.lower == {1: 1, 3: 1, 4: 1}
    assert expectation.upper == {1: 1, 2: 1, 3: 1, 4: 1}
    assert compare(expectation, {1: 1, 2: 1, 3: 1, 4: 1}) == {}
    assert compare(expectation, {1: 1, 3: 1, 4: 1}) == {}
    assert compare(expectation, {1: 2, 3: 1, 4: 1}) == {1: (1, 2, 1)}
    # Only user:d's post 4 must have been counted after the restart (user:c's 3 may have counted at
    # the edge, user:a's 1 before the outage).
    assert expectation.fresh_after_outage == 1


def test_viewers_are_named_as_the_server_counts_them():
    today = datetime.now(UTC).strftime("%Y%m%d")
    browser = Browser(None, "127.0.0.1", Results(), number=3)
    agent = "casusult-loadtest/1 (browser 3; visitor 0)"
    assert browser.user_agent == agent
    assert browser.viewer(today) == f"anonymous:{agent}|{today}"  # no cookie yet: the digest
    browser.cookies["visitor"] = make_visitor_cookie(today, "0" * 32)
    assert browser.viewer(today) == f"anonymous:{agent}|{today}"  # its first day: the digest
    visitor_id = browser.cookies["visitor"].split(".")[0]
    assert browser.viewer("20991231") == f"visitor:{visitor_id}"  # later days: the cookie's id
    browser.leave()
    assert browser.viewer(today) == f"anonymous:{agent.replace('visitor 0', 'visitor 1')}|{today}"
    assert Browser(None, "h", Results(), username="demo1").viewer(today) == "user:demo1"
