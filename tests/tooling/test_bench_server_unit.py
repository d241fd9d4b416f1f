"""The real-server benchmark's pieces that need no server: databases, wrk's Lua, CPU accounting,
the on/off pairs' run order and the paired ratios reported from them."""

import os
from types import SimpleNamespace

import pytest

from benchmarks import server, server_report
from benchmarks.harness import Contender, ContenderFailed


def test_the_main_size_keeps_the_benchmark_database_and_others_get_their_own():
    options = SimpleNamespace(posts=1_000_000, database_url="postgres://u@h:5432/bench")
    assert server.database_for(options, 1_000_000) == "postgres://u@h:5432/bench"
    assert server.database_for(options, 10_000) == "postgres://u@h:5432/bench_10000"


def test_viewer_headers_give_each_viewer_its_own_identity():
    prepared = {"sessions": [f"s{n}" for n in range(200)], "visitor_cookies": ["v"] * 200}
    logged_in = server.viewer_headers("logged-in", prepared)
    cookieless = server.viewer_headers("anonymous, no cookies", prepared)
    assert len(logged_in) == server.VIEWERS
    assert logged_in[5]["Cookie"] == "sessionid=s5"
    assert all("Cookie" not in headers for headers in cookieless)
    assert len({headers["User-Agent"] for headers in cookieless}) == server.VIEWERS


def test_the_wrk_script_quotes_headers_as_lua_strings():
    assert server.lua({"Cookie": 'a"b'}) == '{["Cookie"] = "a\\"b"}'
    script = server.WRK_SCRIPT % {"headers": server.lua({"A": "b"}), "path": server.lua("/x?y=1")}
    assert 'local path = "/x?y=1"' in script
    assert "n % #headers + 1" in script


def test_cpu_seconds_reads_this_process_and_is_zero_for_a_gone_one():
    assert server.cpu_seconds(os.getpid()) > 0
    assert server.cpu_seconds(2**22 + 12345) == 0.0


KEYS = [(10, "1", "logged-in"), (10, "1", "anonymous, cookie"), (10, "500", "logged-in")]


def test_pair_keys_are_every_size_page_and_viewer_kind():
    options = SimpleNamespace(server_posts=[10, 20], server_depth=500)
    keys = server.pair_keys(options)
    assert len(keys) == 2 * 2 * len(server.KINDS)
    assert keys[0] == (10, "1", "logged-in")
    assert keys[-1] == (20, "500", "anonymous, no cookies")


@pytest.mark.parametrize("round_number", range(4))
def test_a_round_runs_each_pair_back_to_back_on_first_in_even_rounds(round_number):
    order = server.round_order(KEYS, round_number)
    assert len({case.name for case in order}) == len(order) == 2 * len(KEYS)
    firsts, seconds = order[0::2], order[1::2]
    assert [first.key for first in firsts] == [second.key for second in seconds]
    assert {first.recording for first in firsts} == {round_number % 2 == 0}
    assert {second.recording for second in seconds} == {round_number % 2 == 1}


def test_the_pairs_rotate_by_one_each_round():
    assert [case.key for case in server.round_order(KEYS, 1)[0::2]] == [KEYS[1], KEYS[2], KEYS[0]]
    assert [case.key for case in server.round_order(KEYS, 3)[0::2]] == [KEYS[0], KEYS[1], KEYS[2]]
    first, second = server.round_order(KEYS, 1)[:2]
    assert (first.name, second.name) == (
        "10 posts, page 1, anonymous, cookie, impressions off",
        "10 posts, page 1, anonymous, cookie, impressions on",
    )


def test_a_group_runs_its_sizes_together_and_reverses_every_other_round():
    keys = server.pair_keys(SimpleNamespace(server_posts=[10, 20], server_depth=500))
    even, odd = server.round_order(keys, 0), server.round_order(keys, 1)
    assert len(even) == len(odd) == 2 * len(keys)
    assert [(case.posts, case.recording) for case in even[:4]] == [
        (10, True),
        (10, False),
        (20, True),
        (20, False),
    ]
    assert {case.key[1:] for case in even[:4]} == {("1", "logged-in")}
    # The next round starts one group later, and runs each group the other way round.
    assert {case.key[1:] for case in odd[:4]} == {("1", "anonymous, cookie")}
    assert [(case.posts, case.recording) for case in odd[:4]] == [
        (20, False),
        (20, True),
        (10, False),
        (10, True),
    ]


def test_the_report_pairs_the_sizes_by_round_and_judges_each_page():
    options = SimpleNamespace(
        server_posts=[10, 20], server_depth=500, server_connections=12, server_duration=1,
        server_rounds=2,
    )  # fmt: skip
    keys = server.pair_keys(options)
    by_name, cases = {}, []
    for posts, page, kind in keys:
        for recording in (True, False):
            case = server.Case(posts, page, kind, recording)
            cases.append(case)
            # A loaded second round; the large table is 5 % slower on page 1, 20 % on page 500.
            slower = 1 if posts == 10 else (0.95 if page == "1" else 0.8)
            by_name[case.name] = [100 * slower, 50 * slower]
    results, figures = server.run_pairs(fake_contenders(by_name, []), keys, 2, lambda line: None)
    prepared = {10: {"posts": 10}, 20: {"posts": 20}}
    body, found = server_report.render(cases, results, figures, prepared, (0.5, 0.7), options)
    assert found["pages"]["1"].median == pytest.approx(0.95)
    assert found["pages"]["1"].verdict() == "met"
    assert found["pages"]["500"].median == pytest.approx(0.8)
    assert found["pages"]["500"].verdict() == "missed"
    assert found["pages"]["500"].count == 2 * len(server.KINDS) * 2  # on/off x kinds x rounds
    assert found["pages_cpu"]["500"].median == pytest.approx(0.8)
    assert "req/s at 20 ÷ at 10: median (min to max)" in body
    assert (
        "page 1 **0.95** (0.95 to 0.95) met; page 500 **0.80**" in server_report.headlines(found)[0]
    )


def fake_contenders(rates_by_name, calls):
    """Contenders by case name, from `rates_by_name` ({case name: [req/s of each round, or None
    for a failure]}): runs of 1 s with CPU per request 1/rate, like a server alone on its cores."""

    def runner(name):
        rates = iter(rates_by_name[name])

        def run():
            calls.append(name)
            rate = next(rates)
            if rate is None:
                raise ContenderFailed("wrk failed")
            figures = {"p50": 0.01, "p99": 0.05, "rows": 0, "database_rows": 0, "cpu": 1 / rate}
            return server.ServerRun(seconds=1.0, units=rate, figures=figures)

        return run

    return {name: Contender(name, runner(name)) for name in rates_by_name}


def test_run_pairs_runs_the_round_order_and_keeps_a_failure():
    on, off = server.Case(*KEYS[0], True), server.Case(*KEYS[0], False)
    calls = []
    contenders = fake_contenders({on.name: [80, None, 99], off.name: [100, 50, 99]}, calls)
    results, figures = server.run_pairs(contenders, KEYS[:1], 3, log=lambda line: None)
    # on-off, off-on (on fails), off alone: a failed case is not run again.
    assert calls == [on.name, off.name, off.name, on.name, off.name]
    assert {r.name: r.error for r in results} == {on.name: "wrk failed", off.name: None}
    assert [(run["round"], run["rate"]) for run in figures[on.name]] == [(0, 80)]
    assert [(run["round"], run["rate"]) for run in figures[off.name]] == [
        (0, 100),
        (1, 50),
        (2, 99),
    ]
    assert figures[off.name][1]["cpu"] == pytest.approx(0.02)


def test_paired_ratios_pair_the_two_sides_by_round():
    on = [{"round": 0, "rate": 90, "cpu": 2.0}, {"round": 1, "rate": 30, "cpu": 4.0}]
    off = [
        {"round": 0, "rate": 100, "cpu": 1.0},
        {"round": 1, "rate": 60, "cpu": 3.0},
        {"round": 2, "rate": 80, "cpu": 1.0},  # its "on" failed: no pair
    ]
    assert server_report.paired_ratios(on, off, "rate") == pytest.approx([0.9, 0.5])
    assert server_report.paired_ratios(on, off, "cpu", inverse=True) == pytest.approx([0.5, 0.75])
    assert server_report.paired_ratios(on, [], "rate") == []
    zero = [{"round": 0, "rate": 0}]
    assert server_report.paired_ratios(on, zero, "rate") == []  # NaN (÷ 0) is left out


def test_by_kind_pools_sizes_pages_and_rounds_and_judges_the_median():
    paired = {
        (10, "1", "logged-in"): [0.95, 0.70],
        (10, "500", "logged-in"): [0.80],
        (20, "1", "logged-in"): [1.10],
        (10, "1", "anonymous, cookie"): [0.90, 0.85, 0.99],
    }
    kinds = server_report.by_kind(paired)
    assert list(kinds) == list(server.KINDS)
    logged_in = kinds["logged-in"]
    assert (logged_in.count, logged_in.low, logged_in.high) == (4, 0.70, 1.10)
    assert logged_in.median == pytest.approx(0.875)
    assert logged_in.verdict() == "missed"
    assert kinds["anonymous, cookie"].median == 0.90
    assert kinds["anonymous, cookie"].verdict() == "met"  # the goal is ≥ 0.9
    assert kinds["anonymous, cookie"].text() == "**0.90** (0.85 to 0.99)"
    nothing = kinds["anonymous, no cookies"]
    assert (nothing.count, nothing.verdict(), nothing.text()) == (0, "n/a", "n/a")


def test_the_report_judges_paired_ratios_not_the_ratio_of_medians():
    options = SimpleNamespace(
        server_posts=[10], server_depth=500, server_connections=12, server_duration=1,
        server_rounds=2,
    )  # fmt: skip
    keys = server.pair_keys(options)
    # A quiet round and a loaded one: req/s of each side, by round.
    rates = {
        "logged-in": ([96, 40], [100, 50]),  # paired 0.96 and 0.80: 0.88; medians 68 ÷ 75 = 0.91
        "anonymous, cookie": ([98, 50], [100, 50]),
        "anonymous, no cookies": ([80, 40], [100, 50]),
    }
    cases, by_name = [], {}
    for key in keys:
        on, off = server.Case(*key, True), server.Case(*key, False)
        cases += [on, off]
        by_name[on.name], by_name[off.name] = rates[key[2]]
    by_name["10 posts, page 500, anonymous, no cookies, impressions on"] = [90, None]  # 1 pair
    results, figures = server.run_pairs(fake_contenders(by_name, []), keys, 2, lambda line: None)
    prepared = {10: {"posts": 10}}
    body, found = server_report.render(cases, results, figures, prepared, (0.5, 0.7), options)

    kinds = found["kinds"]
    assert kinds["logged-in"].median == pytest.approx(0.88)
    assert kinds["logged-in"].verdict() == "missed"
    assert kinds["anonymous, cookie"].median == pytest.approx(0.99)
    cookieless = kinds["anonymous, no cookies"]
    assert (cookieless.count, cookieless.median, cookieless.high) == (3, 0.8, 0.9)
    # CPU per request is 1/rate here, so off ÷ on of CPU equals on ÷ off of req/s.
    assert found["kinds_cpu"]["logged-in"].median == pytest.approx(0.88)
    assert found["on_off"][10, "1", "logged-in"] == pytest.approx(0.88)
    assert "| logged-in             | 4           | **0.88** (0.80 to 0.96)" in body
    assert "| 10,000" not in body and "| 10    | 500  | anonymous, no cookies | FAILED / 75" in body
    assert "- FAILED: 10 posts, page 500, anonymous, no cookies, impressions on: wrk failed" in body
    lines = server_report.headlines(found)
    assert "logged-in **0.88** (0.80 to 0.96) missed; anonymous, cookie **0.99**" in lines[1]
