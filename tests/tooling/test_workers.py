"""tests/workers.py: `make test`'s worker processes each get Redis databases of their own."""

import json
import subprocess
import sys

import pytest

from tests import workers
from tests.processes import PROJECT_DIR, manage_env, run_python

NOT_A_WORKER = {"PYTEST_XDIST_WORKER": None, workers.MARKER: None}


def test_worker_gw0_keeps_the_urls_and_each_next_one_takes_two_databases_lower():
    assert workers.worker_environment({"PYTEST_XDIST_WORKER_COUNT": "2"}, "gw0") == {
        "REDIS_URL": "redis://127.0.0.1:6379/15",
        "RQ_REDIS_URL": "redis://127.0.0.1:6379/14",
        "DEVSERVICES_PORT_SLICE": "0/2",
        workers.MARKER: "gw0",
    }
    given = {
        "REDIS_URL": "rediss://:pw@cache.example:6380/9?ssl_ca_certs=/ca.pem",
        "RQ_REDIS_URL": "redis://queue.example/8",
        "PYTEST_XDIST_WORKER_COUNT": "3",
    }
    assert workers.worker_environment(given, "gw2") == {
        "REDIS_URL": "rediss://:pw@cache.example:6380/5?ssl_ca_certs=/ca.pem",
        "RQ_REDIS_URL": "redis://queue.example/4",
        "DEVSERVICES_PORT_SLICE": "2/4",  # 4 divides the cluster bus offset, 3 does not
        workers.MARKER: "gw2",
    }
    # No database number is database 0: the first worker only.
    assert workers.worker_environment({"REDIS_URL": "redis://h"}, "gw0")["REDIS_URL"] == "redis://h"


@pytest.mark.parametrize(
    ("environ", "worker", "message"),
    [
        (
            {"REDIS_URL": "redis://h/1"},
            "gw1",
            "REDIS_URL names database 1, too low for test worker gw1",
        ),
        ({"RQ_REDIS_URL": "redis://h"}, "gw1", "RQ_REDIS_URL names database 0, too low"),
        ({"REDIS_URL": "redis://h/x"}, "gw1", "REDIS_URL .* names no database number"),
        ({"TEST_REDIS_CLUSTER_URL": "redis://h:7000"}, "gw1", "TEST_REDIS_CLUSTER_URL names one"),
        ({}, "main", "unexpected pytest-xdist worker name"),
    ],
)
def test_what_the_workers_cannot_share_is_a_clear_error(environ, worker, message):
    with pytest.raises(pytest.UsageError, match=message):
        workers.worker_environment(environ, worker)


def test_the_defaults_are_settings_test_s():
    unset = {**NOT_A_WORKER, "REDIS_URL": None, "RQ_REDIS_URL": None}
    shown = run_python(
        "from django.conf import settings; print(settings.IMPRESSIONS_REDIS_URL, settings.RQ_REDIS_URL)",
        env=unset,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == [
        workers.DEFAULT_URLS["REDIS_URL"],
        workers.DEFAULT_URLS["RQ_REDIS_URL"],
    ]


def test_the_distributions_tests_are_one_unit_of_work_and_the_others_their_file():
    scope = workers.scope_of
    assert scope("tests/distributions/test_typed.py::test_a") == "tests/distributions/"
    assert scope("tests/distributions/test_static_files.py::test_b[x]") == "tests/distributions/"
    assert scope("tests/impressions/test_flush.py::test_c") == "tests/impressions/test_flush.py"


def test_the_longest_unit_by_the_last_runs_goes_first_and_an_untimed_one_by_its_tests():
    # pytest-xdist's order: most tests first; a file of one slow test came last.
    units = {"many.py": ["t"] * 40, "new.py": ["t"] * 30, "some.py": ["t"] * 4, "slow.py": ["t"]}
    durations = {"many.py": 20.0, "some.py": 2.0, "slow.py": 90.0, "gone.py": 500.0}
    # new.py: 30 tests at the 112 s / 45 tests of the timed ones (2.49 s each), 74.7 s.
    assert workers.hand_out_order(units, durations) == ["slow.py", "new.py", "many.py", "some.py"]
    assert workers.hand_out_order(units, {}) == list(units)  # no run timed: xdist's order


def test_a_fresh_clone_orders_by_the_committed_seconds_of_a_whole_run():
    seed = workers.seed_durations()
    assert len(seed) > 100 and all(seconds >= 0 for seconds in seed.values())
    units = {"tests/impressions/test_api.py": ["a"] * 50, "tests/impressions/test_dst.py": ["b"]}
    assert workers.hand_out_order(units, seed)[0] == "tests/impressions/test_dst.py"


def probe(tmp_path, *options, **env):
    """tests/tooling/workers_probe.py in a pytest of its own, as pytest-xdist's worker gw1 starts
    it (PYTEST_XDIST_WORKER set first), without xdist itself (no second process to wait for);
    returns the result and what each probe saw."""
    env = manage_env({**NOT_A_WORKER, "PYTEST_XDIST_WORKER": "gw1", "REDIS_URL": None,
                      "RQ_REDIS_URL": "redis://127.0.0.1:6379/10", "WORKERS_PROBE_OUT": str(tmp_path),
                      **env})  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:xdist", *options, "-p", "no:cacheprovider",
         "-q", "tests/tooling/workers_probe.py"],
        cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return result, [json.loads(path.read_text()) for path in tmp_path.glob("*.json")]


def test_worker_gw1_and_what_it_starts_see_databases_of_its_own(tmp_path):
    result, seen = probe(tmp_path, "-p", "tests.workers")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert seen == [
        {
            "settings": ["redis://127.0.0.1:6379/13", "redis://127.0.0.1:6379/8"],
            "child": ["redis://127.0.0.1:6379/13", "redis://127.0.0.1:6379/8"],
        }
    ]


def test_a_worker_without_the_plugin_stops_before_any_test(tmp_path):
    result, seen = probe(tmp_path)
    assert result.returncode != 0
    assert "pytest -n needs -p tests.workers" in result.stdout + result.stderr
    assert seen == []
