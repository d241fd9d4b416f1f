"""The capacity plan's arithmetic (benchmarks/capacity.py), from made-up measurements; no services."""

import math

import pytest

from benchmarks.capacity import (
    Assumptions,
    Measured,
    ecpus_per_call,
    headlines,
    measured,
    measured_at,
    parts_needed,
    plan,
    render,
)
from benchmarks.harness import format_size

MEASURED = Measured(
    redis_cpu_per_impression=10e-6,
    redis_cpu_per_reload=2e-6,
    bytes_per_call=600,
    simple_command_cpu=5e-6,
    p99=0.004,
    dedup_bytes=30,
    pending_bytes=70,
    flush_rates={1: 10_000, 4: 25_000},
    writes_per_post={1: 2.0, 4: 2.5},
    wal_bytes_per_post={1: 400, 4: 450},
    flush_redis_bytes_per_post=40,
)


def values(assumptions=None, measured_=MEASURED):
    return {line.what: line.value for line in plan(assumptions or Assumptions(), measured_)}


def test_rates_memory_and_cpu_follow_their_formulas():
    found = values()
    peak = 1e9 / 86_400 * 3
    assert found["peak impressions/s"] == pytest.approx(peak)
    assert found["peak record calls/s"] == pytest.approx(peak / 20)
    assert found["Redis CPU at peak (cores, all nodes)"] == pytest.approx(
        peak * 10e-6 + peak * 0.25 * 2e-6
    )
    assert found["Redis memory, de-duplication at peak"] == pytest.approx(peak * 300 * 30)
    assert found["Redis memory, pending counts at peak"] == 2 * 3_000_000 * 70
    # At the K the plan picks (4 here): a post pending in two parts' shards is two UPDATEs.
    assert found["database rows written a peak window"] == 7_500_000
    assert found["database writes/s while a window flushes"] == 7_500_000 / 120
    assert found["WAL written, mean over a peak window"] == pytest.approx(3e6 * 450 / 300)


def test_ecpus_take_the_larger_of_kilobytes_and_cpu_in_simple_commands():
    assert ecpus_per_call(cpu=200e-6, transferred=600, simple_cpu=5e-6) == 40  # CPU dominates
    assert ecpus_per_call(cpu=1e-6, transferred=3 * 1024, simple_cpu=5e-6) == 3  # bytes do
    assert ecpus_per_call(cpu=1e-6, transferred=10, simple_cpu=5e-6) == 1  # at least one
    assert ecpus_per_call(cpu=None, transferred=10, simple_cpu=5e-6) is None
    found = values()
    per_call = found["ECPUs per record call"]
    assert per_call == 40  # 20 impressions x 10 us ÷ 5 us
    reload_call = 20 * 2e-6 / 5e-6
    calls = 1e9 / 86_400 * 3 / 20
    assert found["ECPUs/s at peak"] == pytest.approx(calls * 40 + calls * 0.25 * reload_call)


def test_k_is_the_smallest_measured_fast_enough_or_an_extrapolation():
    assert parts_needed(20_000, {1: 10_000, 4: 25_000}) == 4
    assert parts_needed(5_000, {1: 10_000, 4: 25_000}) == 1
    # Too slow at every measured K: the best rate per part (K=1 here) scaled up.
    assert parts_needed(60_000, {1: 10_000, 4: 25_000}) == 6
    assert parts_needed(1, {}) is None
    assert measured_at({1: 2.0, 4: 2.5}, 6) == 4  # the nearest measured K below
    assert measured_at({1: 2.0, 4: 2.5}, None) == 1 and measured_at({}, 4) is None
    found = values()
    assert found["flush rate needed (posts/s)"] == 3_000_000 / 150
    assert found["one peak window's flush at K=4"] == 120
    assert found["K (IMPRESSIONS_FLUSH_PARTS) and workers"] == 4
    assert found["SQS messages/s"] == 4 / 300


def test_what_the_run_did_not_measure_says_so():
    lines = plan(Assumptions(), Measured())
    texts = {line.what: line.text for line in lines}
    assert texts["ECPUs per record call"] == "not measured"
    assert texts["peak impressions/s"] == "34.7k"
    assert "not measured" in render(Assumptions(), Measured())


def test_measured_prefers_the_cluster_and_the_window_run_at_scale():
    load = {
        name: {
            "most_processes": 8,
            "cpu_per_impression": cpu,
            "reload_raw_cpu_per_impression": 1e-6,
            "bytes_per_call": 500,
            "simple_command_cpu": 4e-6,
            "p99": 0.01,
        }
        for name, cpu in (("standalone", 8e-6), ("3-node cluster", 11e-6))
    }
    small = {1: window_figures(100_000, 40_000)}
    big = {1: window_figures(3_000_000, 30_000), 4: window_figures(3_000_000, 60_000)}
    found = measured(load, {"dedup_bytes": 30, "pending_bytes": 65}, small, big)
    assert found.redis_cpu_per_impression == 11e-6
    assert found.flush_rates == {1: 30_000, 4: 60_000}
    assert found.pending_bytes == 120  # the window's, at scale
    assert found.sources["flush posts/s by K"] == "8, the window run (3,000,000 posts)"
    only_small = measured(None, None, small, None)
    assert only_small.flush_rates == {1: 40_000} and only_small.redis_cpu_per_impression is None
    assert "impressions/s" in headlines(Assumptions(), found)[0]


def window_figures(posts, rate):
    return {
        "posts": posts,
        "rows_per_second": rate,
        "writes_per_post": 2.0,
        "wal_bytes_per_post": 400,
        "redis_flush_bytes_per_post": 40,
        "redis_bytes_per_post": 120,
    }


def test_sizes_read_in_decimal_units():
    assert format_size(331_875_000) == "332 MB"
    assert format_size(1.2e9) == "1.2 GB"
    assert format_size(512) == "512 B"
    assert format_size(math.nan) == "n/a"
