"""casusult.health.run_probes on its own: probes that hang or answer, in threads; no services."""

import threading

from casusult.health import run_probes


def test_a_hung_probe_holds_one_thread_and_never_starves_the_others():
    release = threading.Event()
    probes = {"hung": lambda: release.wait(30) and "late", "fine": lambda: "ok"}
    try:
        for _ in range(20):  # more rounds than the pool has threads
            results = run_probes(probes, timeout=0.1)
            assert results["fine"]["ok"] is True
            assert results["hung"]["ok"] is False
    finally:
        release.set()
