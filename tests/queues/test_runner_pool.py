"""`runworker --concurrency N` forks its workers: with Django's connection pool (DATABASES
OPTIONS "pool") each child takes connections of its own, whatever the parent did before."""

import signal

import pytest
from django.db import connection

from queues import liveness
from queues.runner import STOP_SIGNALS, run_workers


class QueryWorker:
    """A worker that makes one query and stops (exit code 0; a failure exits 1)."""

    def __init__(self, backend, **options):
        pass

    def run(self):
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return 0


# pytest's process has threads of earlier tests; each child makes one query and _exits.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_workers_take_connections_of_their_own_from_djangos_pool(django_pool, monkeypatch):
    monkeypatch.setattr(liveness, "CLOCK", liveness.CLOCK)  # restored after the test
    # The parent opened the pool (its connection then went away, as one the server closed):
    # a child's copy of that pool has none of its threads, so it never gave the child one.
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    connection.connection.close()
    handlers = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    try:
        assert run_workers(QueryWorker, None, concurrency=2) == 0
    finally:  # the parent's forwarding handlers
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
