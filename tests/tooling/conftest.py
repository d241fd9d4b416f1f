"""Fixtures of the tooling tests: running `python -m loadtest` on a database of its own."""

import subprocess
import sys

import pytest

import devservices
from tests.database import sibling_database_url
from tests.processes import PROJECT_DIR, manage_env


@pytest.fixture(scope="session")
def loadtest_database_url():
    """Next to the test database's name, never it: the load test seeds and writes its own.

    Dropped first, as Django drops its test database: tables that another checkout's migrations
    left there would fail this code's writes.
    """
    url = sibling_database_url("loadtest")
    devservices.drop_database(url)
    return url


@pytest.fixture(scope="session")
def run_loadtest(loadtest_database_url):
    """Run `python -m loadtest` with a few users and posts; returns its stdout once it passed."""

    def run(*args):
        result = subprocess.run(
            [sys.executable, "-m", "loadtest", "--users", "5", "--posts", "200", *args],
            cwd=PROJECT_DIR,
            env=manage_env({"DATABASE_URL": loadtest_database_url}),
            capture_output=True,
            text=True,
            timeout=300,
        )
        print(result.stdout)
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr[-3000:]}"
        assert result.stdout.rstrip().splitlines()[-1] == "PASS"
        return result.stdout

    return run
