"""The scrape benchmark (benchmarks/scrape.py) on a small buffer: ours and the old full scan
must read the same totals from a real redis-server, or the benchmark stops (as it did when
BufferStatus grew a field)."""

import re
from types import SimpleNamespace

from benchmarks import scrape


def test_the_scrape_benchmark_runs_and_both_scrapes_agree():
    logged = []
    text, figures = scrape.run(SimpleNamespace(scrape_sizes=[300], rounds=2), log=logged.append)
    assert set(figures) == {300}
    assert figures[300]["ours"][0][1] > 0 and figures[300]["old"][0][1] > 0
    assert re.search(r"^\|\s*300\s*\|", text, re.MULTILINE)
    assert any("300 counters written" in line for line in logged)
