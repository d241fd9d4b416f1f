"""The benchmark harness's arithmetic (medians, percentiles, ratios, interleaving); no services."""

import math

import pytest

from benchmarks.harness import (
    OURS,
    Contender,
    ContenderFailed,
    Measurement,
    Result,
    format_ratio,
    markdown_table,
    median,
    ours_of,
    percentile,
    ratio,
    run_interleaved,
    run_round,
)


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
