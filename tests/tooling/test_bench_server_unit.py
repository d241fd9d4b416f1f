"""The real-server benchmark's pieces that need no server: databases, wrk's Lua, CPU accounting."""

import os
from types import SimpleNamespace

from benchmarks import server


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
