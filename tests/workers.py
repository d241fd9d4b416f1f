"""The test processes of `make test` (pytest-xdist, `-n TEST_WORKERS`): each its own Redis databases.

A pytest plugin, loaded with `-p tests.workers` (the Makefile's command line), so that its hook
runs before pytest-django reads the settings. In a worker process (PYTEST_XDIST_WORKER is gwK) it
rewrites REDIS_URL and RQ_REDIS_URL (settings.test's defaults when unset) in the environment to
databases of the worker's own, 2K below them: the tests empty their Redis databases, and two
workers on one database would empty each other's. What a worker starts (manage.py, the load
test, the chaos soak) inherits them, and the servers the tests start take loopback ports of the
worker's own slice (DEVSERVICES_PORT_SLICE, devservices/ports.py). PostgreSQL needs nothing
here: pytest-django makes a test database per worker (test_NAME_gwK), and the databases tests
make beside it take the worker's suffix too (tests.database.sibling_database_url).
"""

import json
import os
import urllib.parse
from pathlib import Path

import pytest

import devservices

# settings.test's defaults (tests/tooling/test_workers.py checks they are the same).
DEFAULT_URLS = {
    "REDIS_URL": "redis://127.0.0.1:6379/15",
    "RQ_REDIS_URL": "redis://127.0.0.1:6379/14",
}
# Services a test session starts for itself unless the environment names one; one named there
# would be shared, and the tests flush a cluster's only database.
SHARED_SERVICES = (
    "TEST_REDIS_CLUSTER_URL",
    "TEST_REDIS_TLS_CLUSTER_URL",
    "TEST_REDIS_TLS_URL",
)
MARKER = "TEST_WORKER_REDIS"  # set once the URLs are the worker's: tests/conftest.py checks it
# Folders whose tests share session fixtures too costly to make in each worker (the wheels, a
# virtual environment with them): with --dist loadfile, each runs whole on one worker.
SHARED_FOLDERS = ("tests/distributions/",)


def worker_index(worker_id):
    """gw0 -> 0, gw1 -> 1 (pytest-xdist's names of its workers)."""
    if not (worker_id.startswith("gw") and worker_id[2:].isdigit()):
        raise pytest.UsageError(f"unexpected pytest-xdist worker name {worker_id!r}")
    return int(worker_id[2:])


def shifted(variable, url, index):
    """`url` with its database number lowered by 2 * index (the worker's databases)."""
    if not index:
        return url
    parts = urllib.parse.urlsplit(url)
    path = parts.path.strip("/") or "0"
    if not path.isdigit():
        raise pytest.UsageError(f"{variable} ({parts.scheme}://…) names no database number")
    database = int(path) - 2 * index
    if database < 0:
        raise pytest.UsageError(
            f"{variable} names database {path}, too low for test worker gw{index} (it takes"
            f" {path} - 2 x {index}): name a higher one, or run fewer workers (TEST_WORKERS)"
        )
    return urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))


def worker_environment(environ, worker_id):
    """The variables to set in the environment of worker `worker_id`."""
    index = worker_index(worker_id)
    if index:
        for variable in SHARED_SERVICES:
            if environ.get(variable):
                raise pytest.UsageError(
                    f"{variable} names one server for all the test workers, and the tests"
                    " empty it: unset it (each worker starts its own) or run one worker"
                    " (TEST_WORKERS=1)"
                )
    urls = {
        variable: shifted(variable, environ.get(variable) or default, index)
        for variable, default in DEFAULT_URLS.items()
    }
    count = int(environ.get("PYTEST_XDIST_WORKER_COUNT") or index + 1)
    ports = devservices.port_slice(index, max(count, index + 1))
    return {**urls, devservices.PORT_SLICE_VARIABLE: ports, MARKER: worker_id}


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests():
    """Before pytest-django's (which reads the settings), as its documentation advises."""
    if worker_id := os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.update(worker_environment(os.environ, worker_id))


def check_loaded():
    """Stop a worker this plugin did not prepare (`pytest -n 2` without `-p tests.workers`)."""
    worker_id = os.environ.get("PYTEST_XDIST_WORKER")
    if worker_id and os.environ.get(MARKER) != worker_id:
        raise pytest.UsageError(
            "pytest -n needs -p tests.workers (make test gives it): without it, the test"
            " workers share their Redis databases and empty each other's"
        )


def scope_of(nodeid):
    """--dist loadfile's unit of work (a test file), or the SHARED_FOLDERS folder it is in."""
    path = nodeid.split("::", 1)[0]
    return next((folder for folder in SHARED_FOLDERS if path.startswith(folder)), path)


# pytest's cache (.pytest_cache) keeps each unit's seconds in the last run that ran it.
DURATIONS_KEY = "tests/workers/durations"
# Without them (a fresh clone: CI), the seconds of a whole run committed beside this file. To
# refresh it: cp .pytest_cache/v/tests/workers/durations tests/durations.json after a `make test`.
SEED_DURATIONS = Path(__file__).with_name("durations.json")


def hand_out_order(units, durations):
    """`units` ({unit: its tests}, in pytest-xdist's order: most tests first) in the order to hand
    them out: longest first by `durations` ({unit: seconds}, of earlier runs); a unit no run
    timed yet counts its tests at the mean seconds of a test of the others (1 s if none)."""
    timed = [unit for unit in units if unit in durations]
    tests = sum(len(units[unit]) for unit in timed)
    per_test = sum(durations[unit] for unit in timed) / tests if tests else 1.0
    expected = {unit: durations.get(unit, len(units[unit]) * per_test) for unit in units}
    return sorted(units, key=lambda unit: -expected[unit])  # stable: ties keep xdist's order


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """--dist loadfile, with each of SHARED_FOLDERS one unit. Each worker free takes the longest
    unit left, by the last runs' durations (pytest's cache): handed out by their number of tests,
    as pytest-xdist does, a file of one slow test came last and kept one worker busy long after
    the other had finished. Without a cache (-p no:cacheprovider, a fresh CI checkout), by
    SEED_DURATIONS'."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    cache = getattr(config, "cache", None)
    durations = (cache.get(DURATIONS_KEY, {}) if cache else {}) or seed_durations()

    class Scheduling(LoadFileScheduling):
        def _split_scope(self, nodeid):
            return scope_of(nodeid)

        def _assign_work_unit(self, node):
            if durations:
                [first, *_] = hand_out_order(self.workqueue, durations)
                self.workqueue.move_to_end(first, last=False)
            super()._assign_work_unit(node)

    return Scheduling(config, log)


def seed_durations():
    """SEED_DURATIONS' {unit: seconds}, {} if it cannot be read."""
    try:
        return json.loads(SEED_DURATIONS.read_text())
    except (OSError, ValueError):
        return {}


_timed = {}  # unit: seconds of its tests in this run (the controller's, from every worker)


def pytest_runtest_logreport(report):
    _timed[scope_of(report.nodeid)] = _timed.get(scope_of(report.nodeid), 0.0) + report.duration


def pytest_sessionfinish(session):
    """Keep this run's durations of its units (those of the units it did not run stay)."""
    config = session.config
    cache = getattr(config, "cache", None)
    if cache is None or config.getvalue("dist") != "loadfile" or not _timed:
        return  # the workers' (their controller keeps it), a run in one process
    durations = cache.get(DURATIONS_KEY, {})
    durations.update({unit: round(seconds, 2) for unit, seconds in _timed.items()})
    cache.set(DURATIONS_KEY, durations)
