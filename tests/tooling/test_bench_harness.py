"""The benchmark harness's arithmetic (medians, percentiles, ratios, interleaving, the load
loop and its checks); no services."""

import math
import time

import pytest

from benchmarks.harness import (
    OURS,
    Contender,
    ContenderFailed,
    Measurement,
    Result,
    Spread,
    format_ratio,
    markdown_table,
    median,
    ours_of,
    paired_ratios,
    percentile,
    ratio,
    run_interleaved,
    run_round,
)
from benchmarks.loadworkers import timed_loop
from benchmarks.recordload import FIRST_VIEWS, RELOADS, LoadRun, check_exact
from benchmarks.redisraw import parse_csv
from benchmarks.targets import ServerSample


def test_median_and_percentile_match_the_textbook():
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 3, 2]) == 2.5
    assert percentile(list(range(101)), 99) == 99
    assert percentile([1, 2], 50) == 1.5  # linear interpolation, like numpy's default
    assert math.isnan(median([]))


def test_ratio_guards_missing_values():
    assert ratio(10, 4) == 2.5
    assert math.isnan(ratio(1, 0))
    assert math.isnan(ratio(None, 2))
    assert format_ratio(math.nan) == "n/a"


def test_measurement_rate_and_result_medians():
    assert Measurement(seconds=2, units=10).rate == 5
    ours = Contender("ours", lambda: Measurement(seconds=1, units=100), OURS)
    other = Contender("other", lambda: Measurement(seconds=4, units=100))
    results = run_interleaved([ours, other], rounds=3, log=lambda line: None)
    assert [len(r.measurements) for r in results] == [3, 3]
    assert ours_of(results).median_rate == 100
    assert ratio(results[1].median_seconds, ours_of(results).median_seconds) == 4


def test_rounds_rotate_the_order_and_a_failure_is_kept_not_raised():
    calls = []

    def make(name):
        def run():
            calls.append(name)
            if name == "C":
                raise ContenderFailed("not built")
            return Measurement(seconds=1, units=1)

        return run

    contenders = [Contender(name, make(name)) for name in "ABC"]
    results = run_interleaved(contenders, rounds=2, log=lambda line: None)
    assert calls == ["A", "B", "C", "B", "A"]  # round 2 starts at B; failed C is not rerun
    assert results[2].error == "not built"
    assert ours_of(results) is None


def test_run_round_returns_the_measurement_or_none_once_the_contender_failed():
    outcomes = iter([Measurement(seconds=1, units=3), ContenderFailed("gone")])

    def run():
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    result = Result(Contender("A", run))
    assert run_round(result, 0, log=lambda line: None).units == 3
    assert run_round(result, 1, log=lambda line: None) is None
    # Not rerun: a third call of run() would raise StopIteration.
    assert run_round(result, 2, log=lambda line: None) is None
    assert result.error == "gone"
    assert [m.units for m in result.measurements] == [3]


def test_markdown_table_aligns_columns():
    table = markdown_table(["a", "bb"], [["1", "2"], ["333", "4"]])
    lines = table.splitlines()
    assert lines[0] == "| a   | bb |"
    assert lines[1] == "| --- | -- |"
    assert lines[3] == "| 333 | 4  |"
    with pytest.raises(ValueError, match="zip"):
        markdown_table(["a"], [["1", "2"]])


def test_paired_ratios_and_their_spread():
    ratios = paired_ratios([2, 3, 4], [1, 4, 0])
    assert ratios[:2] == [2, 0.75] and math.isnan(ratios[2])
    spread = Spread.of(ratios)
    assert (spread.median, spread.low, spread.high) == (1.375, 0.75, 2)
    assert spread.meets(1.3) and not spread.meets(1.4)
    assert spread.text() == "1.38 (0.75 to 2.00)"
    assert Spread.of([]).text() == "n/a" and not Spread.of([]).meets(0)
    with pytest.raises(ValueError, match="zip"):
        paired_ratios([1], [1, 2])


def test_redis_benchmark_csv_skips_the_cluster_preamble():
    text = (
        "Cluster has 3 master nodes:\n\nMaster 0: 8473 127.0.0.1:11031\n\n"
        '"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",'
        '"p99_latency_ms","max_latency_ms"\n'
        '"EVALSHA e0e1 1 {tag}:x","7462.69","0.328","0.024","0.167","0.583","4.367","19.167"\n'
    )
    assert parse_csv(text) == [
        {"test": "EVALSHA e0e1 1 {tag}:x", "rps": 7462.69, "p50_ms": 0.167, "p99_ms": 4.367}
    ]


def test_timed_loop_counts_calls_and_says_when_the_calls_ran_out():
    done = timed_loop([1, 2, 3], lambda item: (item, 1), time.time(), seconds=3600)
    assert (done.calls, done.counted, done.lost, done.exhausted) == (3, 6, 3, True)
    assert len(done.latencies) == 3
    # A deadline already past: one call, then it stops, cycling or not.
    once = timed_loop([5], lambda item: (item, 0), time.time(), seconds=0, cycle=True)
    assert (once.calls, once.counted, once.exhausted) == (1, 5, False)


def test_a_run_is_exact_or_fails():
    check_exact("ours", FIRST_VIEWS, served=100, counted=80, lost=20, pending=90)
    check_exact("raw", RELOADS, served=100, counted=0, lost=0, pending=0)
    with pytest.raises(ContenderFailed, match="expected 100"):
        check_exact("ours", FIRST_VIEWS, served=100, counted=90, lost=0, pending=90)
    with pytest.raises(ContenderFailed, match="Redis holds 101"):
        check_exact("ours", FIRST_VIEWS, served=100, counted=100, lost=0, pending=101)
    with pytest.raises(ContenderFailed, match="expected 0"):
        check_exact("ours", RELOADS, served=100, counted=20, lost=0, pending=20)


def test_server_samples_subtract_and_a_run_divides_by_what_it_recorded():
    before = ServerSample(cpu=1.0, net_in=100, net_out=50)
    used = ServerSample(cpu=1.5, net_in=1100, net_out=2050) - before
    assert used == ServerSample(0.5, 1000, 2000)
    run = LoadRun("ours", 2, calls=10, served=200, counted=150, lost=50, rate=1.0, server=used)
    assert run.cpu_per_impression == 0.5 / 150
    assert run.bytes_per_call == 300


def test_the_flush_s_wal_table_shows_each_contender_s_median_wal_per_row():
    from benchmarks.flush import SAME_WORK, wal_table

    def result(name, kind, rounds):
        return Result(
            Contender(name, lambda: None, kind),
            [Measurement(s, 100_000, counters={"wal_bytes": wal}) for s, wal in rounds],
        )

    ours = result("ours", OURS, [(1.0, 400_000_000), (2.0, 900_000_000), (3.0, 500_000_000)])
    raw = result(SAME_WORK, "raw limit", [(0.5, 300_000_000)])
    table = wal_table({100_000: [ours, raw]})
    assert "| 100,000       | 5,000 B | 3,000 B       | 20 µs / 5 µs" in table
    # A run without the counter (a contender that failed to report it) shows a dash, not 0.
    raw.measurements[0].counters.clear()
    assert "| 5,000 B | -             |" in wal_table({100_000: [ours, raw]})


def test_the_newest_posts_table_judges_ours_cost_per_row_against_its_smallest_size():
    from benchmarks.flush import SAME_WORK, newest_table
    from benchmarks.run import newest_headlines

    def result(name, kind, size, seconds):
        return Result(Contender(name, lambda: None, kind), [Measurement(s, size) for s in seconds])

    newest = {
        10_000: [
            result("ours", OURS, 10_000, [0.14, 0.15, 0.16]),
            result(SAME_WORK, "raw limit", 10_000, [0.20, 0.20, 0.20]),
        ],
        100_000: [
            result("ours", OURS, 100_000, [1.2, 1.3, 1.4]),
            result(SAME_WORK, "raw limit", 100_000, [1.0, 1.0, 1.0]),
        ],
        1_000_000: [
            result("ours", OURS, 1_000_000, [20.0]),
            result(SAME_WORK, "raw limit", 1_000_000, [10.0]),
        ],
    }
    table = newest_table(newest)
    # 15 µs at 10,000; 13 µs (0.867x: met) at 100,000; 20 µs (1.33x: missed) at 1,000,000.
    assert "| 10,000                 | 15 µs        | **1×**          | met" in table  # noqa: RUF001
    assert "| 13 µs        | **0.867×**      | met        | 10 µs                 | 0.5×" in table  # noqa: RUF001
    assert "| 20 µs        | **1.33×**       | **missed** | 10 µs" in table  # noqa: RUF001
    # Ours ÷ the same-work SQL, paired by round: 0.7, 0.75, 0.8 at 10,000.
    assert "0.75 (0.70 to 0.80)" in table
    (headline,) = newest_headlines(newest)
    assert "15 µs at 10,000, 13 µs at 100,000 (0.87×, met), 20 µs at 1,000,000 (1.33×" in headline  # noqa: RUF001
    # One size alone judges nothing.
    assert newest_headlines({10_000: newest[10_000]}) == []


def test_the_snapshot_read_pairs_ours_with_hgetall_by_round_and_counts_waits_over_budget():
    from argparse import Namespace

    from benchmarks import snapshot_read

    ours, naive, floor = snapshot_read.CONTENDERS
    # (read seconds, longest wait, waits over the budget), three rounds.
    results = {
        1000: {
            ours: [(0.06, 0.004, 0), (0.07, 0.002, 0), (0.06, 0.003, 0)],
            naive: [(0.05, 0.040, 0), (0.05, 0.010, 0), (0.05, 0.060, 2)],
            floor: [(0.0, 0.001, 0), (0.0, 0.001, 0), (0.0, 0.002, 0)],
        }
    }
    spread = snapshot_read.ratio(results, 1000)
    assert (spread.median, spread.low, spread.high) == pytest.approx((0.1, 0.05, 0.2))
    text = snapshot_read.render(Namespace(rounds=3), results)
    hgetall_row = next(row for row in text.splitlines() if "| one HGETALL " in row)
    assert [cell.strip() for cell in hgetall_row.split("|")][5] == "2"  # summed over the rounds
    assert "0.10 (0.05 to 0.20)" in text
    assert "**0.10 (0.05 to 0.20)**" in snapshot_read.headlines(results)[0]


def test_the_midnight_verdict_takes_every_flush_and_shows_the_tails_and_the_wal():
    from types import SimpleNamespace

    from benchmarks import midnight
    from benchmarks.run import midnight_headlines

    # One round: the usual flushes (the slowest 0.30 s), then the roll-up's: running (the worst
    # 0.33 s, which wrote 900 KB of WAL) and paused.
    round_ = {
        "usual": [0.20] * 29 + [0.30],
        "usual_wal": [100 * 1024] * 30,
        "during": [0.22, 0.33, 0.21],
        "during_wal": [110 * 1024, 900 * 1024, 120 * 1024],
        "paused": [0.22, 0.20],
        "paused_wal": [100 * 1024, 100 * 1024],
        "checkpoints": 1,
        "rollup": (30.0, 100_000, 300_001),
    }
    assert midnight.tails([round_]) == [pytest.approx(1.1)]
    (line,) = midnight_headlines([round_])
    assert "the worst 1.65\N{MULTIPLICATION SIGN} (goal" in line and "**missed**" in line
    assert "each round's worst ÷ its worst usual flush (as many flushes): 1.10" in line
    bench = SimpleNamespace(facts={"daily_rows": 40_000_000}, last_day="2026-12-04")
    text = midnight.render(
        SimpleNamespace(midnight_posts=20_000, midnight_late=0.1), bench, [round_]
    )
    assert "| **1.65**" in text and "| 1.10 " in text
    assert "100 KB / 120 KB / 900 KB; 1" in text
    # The roll-up's WAL a row, by wal_compression, each against none.
    text = midnight.render(
        SimpleNamespace(midnight_posts=20_000, midnight_late=0.1),
        bench,
        [round_],
        {"off": 15_360, "zstd": 4_000},
    )
    assert "`off` 15 KB, `zstd` 4 KB (0.26\N{MULTIPLICATION SIGN})" in text


def test_the_zstd_table_pairs_ours_by_round_and_scales_the_cost_per_row_by_its_own_smallest():
    from benchmarks.flush import ZSTD, compressed_table

    def result(name, kind, rounds, size):
        return Result(
            Contender(name, lambda: None, kind),
            [Measurement(s, size, counters={"wal_bytes": w * size}) for s, w in rounds],
        )

    by_size = {
        10_000: [
            result("ours", OURS, [(0.20, 4000), (0.30, 4000)], 10_000),
            result(ZSTD, ZSTD, [(0.10, 1000), (0.20, 1000)], 10_000),
        ],
        1_000_000: [
            result("ours", OURS, [(8.0, 400), (9.0, 400)], 1_000_000),
            result(ZSTD, ZSTD, [(8.0, 300), (9.0, 300)], 1_000_000),
        ],
    }
    table = compressed_table(by_size)
    # Paired: 0.10/0.20 and 0.20/0.30 (median 0.58); 15 µs a row at 10,000, 8.5 µs at 1,000,000.
    assert "| 10,000        | 0.58 (0.50 to 0.67) | 15 µs   | 1\N{MULTIPLICATION SIGN}" in table
    assert "| 1,000,000     | 1.00 (1.00 to 1.00) | 8.5 µs  | 0.567\N{MULTIPLICATION SIGN}" in table
    assert "1,000 B / 4,000 B" in table and "300 B / 400 B" in table
    # The server refused the setting: no zstd result at any size.
    by_size = {size: results[:1] for size, results in by_size.items()}
    assert "not measured" in compressed_table(by_size)


def test_the_first_ceiling_is_sized_by_an_untimed_run_not_by_a_guess(monkeypatch):
    from benchmarks import recordload

    class FakeTarget:
        url, cluster, cpu, client_cpus = "redis://bench", False, 0.0, None

        def flush(self):
            pass

        def sample(self):
            return ServerSample(self.cpu, 0, 0)

    asked = []

    def fake_benchmark(url, clients, *command, requests, cluster, cpus, pinned):
        assert cpus is None  # unpinned: redis-benchmark runs wherever the kernel puts it
        asked.append(requests)
        # A short run pays its connections' set-up: under half the rate of a long one.
        return [{"rps": 4_000.0 if requests < 20_000 else 10_000.0}]

    monkeypatch.setattr(recordload, "redis_benchmark", fake_benchmark)
    bench = object.__new__(recordload.LoadBench)
    bench.target, bench.seconds, bench.log, bench.ceiling_rates = FakeTarget(), 2.0, print, {}
    command = ["SET", "{tag}:k", "v"]
    first = bench.ceiling("SET", command)
    # Sized by the guess (5,000 calls/s for 2 s), untimed; then timed, sized by what it measured.
    assert asked == [10_000, 8_000]
    assert first.calls == 8_000
    bench.ceiling("SET", command)
    assert asked[2:] == [8_000]  # the next rounds: one run each, sized by the last


def test_flush_workload_gives_each_post_its_viewers_or_one_or_two():
    from types import SimpleNamespace

    from benchmarks.flush import impressions_each, pending_workload

    ids = list(range(1, 1001))
    default = pending_workload(ids, 100, seed=7)
    assert len(default) == 100 and list(default) == sorted(default)
    assert set(default.values()) == {1, 2}
    assert sum(default.values()) == 150  # half the posts 2
    viewers = pending_workload(ids, 100, seed=7, viewers=16)
    assert list(viewers) == list(default)  # the same posts, only more impressions each
    assert set(viewers.values()) == {16}
    assert impressions_each(SimpleNamespace(flush_viewers=None)) == "1 or 2 impressions"
    assert "16 impressions" in impressions_each(SimpleNamespace(flush_viewers=16))
    newest = pending_workload(ids, 100, seed=7, newest=True)
    assert list(newest) == list(range(901, 1001)) and set(newest.values()) == {1, 2}
    assert impressions_each(SimpleNamespace(flush_viewers=None, flush_newest=True)) == (
        "the newest posts, 1 or 2 impressions"
    )
    with pytest.raises(SystemExit, match="more than"):
        pending_workload(ids, 1001, seed=7)


def test_results_say_when_the_code_measured_is_not_the_commit(tmp_path):
    import subprocess

    from benchmarks.machine import git_commit

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "notes.md").write_text("results\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    clean = git_commit(cwd=tmp_path)
    assert clean != "unknown" and "uncommitted" not in clean
    (tmp_path / "notes.md").write_text("new results\n")  # a run writes its results: still clean
    assert git_commit(cwd=tmp_path) == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(cwd=tmp_path) == f"{clean} + uncommitted changes to 1 file(s)"
