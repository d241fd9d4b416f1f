"""The load test's arithmetic and flags, with made-up timings; no services."""

from datetime import UTC, datetime

import pytest

from impressions.viewers import make_visitor_cookie
from loadtest.__main__ import parser
from loadtest.clients import Browser, Results
from loadtest.expectations import Outage, Served, compare, expected_counts


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


def test_only_pairs_new_while_down_must_be_dropped():
    outage = Outage(stop_requested=10, stopped=11, start_requested=20, started=21)
    expectation = expected_counts(
        [
            served("user:a", [1, 2], 5),  # up: a process may remember the pairs ...
            served("user:a", [1, 2], 12),  # ... and de-duplicate this reload without Redis
            served("user:a", [1, 3], 13),  # post 3 is new while down: dropped; 1 maybe not
            served("user:b", [2], 10.5),  # at the stop: may have counted, then be remembered
            served("user:b", [2], 14),  # so this one may be de-duplicated too
            served("user:c", [4], 15),  # new while down: dropped
            served("user:c", [4], 16),  # a reload of a pair that never counted: dropped again
        ],
        outage,
    )
    assert expectation.impressions["down"] == 7
    assert expectation.fresh_while_down == 3


def test_by_default_the_load_test_runs_on_a_grown_site():
    options = parser().parse_args([])
    assert options.posts >= 100_000
    assert (options.clients, options.duration) == (50, 60.0)


@pytest.mark.parametrize(
    "flags", [["--clients", "0"], ["--duration", "0"], ["--posts", "-5"], ["--logged-in", "-1"]]
)
def test_bad_flags_are_usage_errors(flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(flags)
    assert exit_info.value.code == 2
    assert flags[0] in capsys.readouterr().err


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
