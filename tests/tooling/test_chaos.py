"""The chaos soak (python -m benchmarks.chaos), a few seconds on RQ: it runs, kills, and finds the
counts exact. The soak itself (10-15 minutes a backend) is run by hand: docs/benchmarks.md."""

import json
import subprocess
import sys

import pytest

import devservices
from tests.database import sibling_database_url
from tests.processes import PROJECT_DIR, manage_env

pytestmark = pytest.mark.long


def test_a_short_soak_on_rq_kills_workers_and_counts_exactly(tmp_path):
    url = sibling_database_url("chaos")
    out = tmp_path / "soak"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "benchmarks.chaos", "--backend", "rq", "--duration", "6",
             "--pause", "0.3", "--posts", "300", "--seed", "7", "--database-url", url,
             "--out", str(out)],
            cwd=PROJECT_DIR, env=manage_env(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        devservices.drop_database(url)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    report = json.loads((out / "report.json").read_text())
    assert report["problems"] == []
    assert report["posts_total"] == report["tally_total"] > 0
    assert report["events"].get("kill-worker", 0) + report["events"].get("pg-terminate", 0) > 0
    assert report["ledger"].get("applied", 0) > 0
