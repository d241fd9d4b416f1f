"""Recording under gevent's monkey-patching, as gunicorn's gevent worker runs a site: a greenlet
per open client connection, living as long as that connection stays open (keep-alive), up to
its worker_connections (1,000) in one process.

gevent is no dependency of the apps: requirements-dev.txt installs it for these tests, which run
it in a child process (the monkey-patching would change the test process itself).
"""

import json

from django.conf import settings

from tests.processes import run_python

from .support import with_option

# GREENLETS greenlets record two pages each, then stay alive (their client connections stay
# open) until all have recorded; printed: each one's (counted, lost).
GREENLETS = """
import json, os
{before}
import django
django.setup()
from impressions import redis_client
from impressions.recorder import record_impressions
{warm}
{after}
import gevent
from gevent.event import Event
from gevent.lock import Semaphore

GREENLETS = {greenlets}
results, all_recorded, open_connections = [], Event(), Event()
holders = []  # each greenlet's kept connections, as record calls find them
# Calls in flight at once: the pool bounds those, by design; the open connections are the point.
turn = Semaphore({in_flight})

def client_connection(number):
    with turn:
        first = record_impressions(f"u:{{number}}", [number, 10_000])
        holders.append(redis_client._thread_state().connections)
    gevent.sleep(0)  # the others record their first page meanwhile
    with turn:
        second = record_impressions(f"u:{{number}}", [number + 100_000])
    results.append((first.counted + second.counted, first.lost + second.lost))
    if len(results) == GREENLETS:
        all_recorded.set()
    open_connections.wait()  # the keep-alive connection, open until its client leaves

greenlets = [gevent.spawn(client_connection, number) for number in range(GREENLETS)]
all_recorded.wait(20)
open_connections.set()
gevent.joinall(greenlets, timeout=20)
print(json.dumps([results, len({{id(held) for held in holders}})]))
"""

PATCH = "from gevent import monkey; monkey.patch_all()"


def record_in_greenlets(url, greenlets, *, preload=False, warm=True, timeout=60):
    """(counted, lost) of each greenlet, in the order they recorded, and how many holders of
    kept connections the greenlets had between them (one each: none took another's connection
    mid-call, however the calls interleaved). `preload`: the app loaded,
    and a first call made (unless not `warm`), before the monkey-patching, in a parent that then
    forks, as gunicorn --preload loads it in its master before it forks gevent workers."""
    fork = (
        "pid = os.fork()\nif pid:\n    os._exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))"
    )
    code = GREENLETS.format(
        before="" if preload else PATCH,
        warm='record_impressions("u:master", [10_000])' if preload and warm else "",
        after=f"{fork}\n{PATCH}" if preload else "",
        greenlets=greenlets,
        in_flight=greenlets if preload else 1,
    )
    result = run_python(code, env={"REDIS_URL": url, "PYTHONWARNINGS": "ignore"}, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_more_open_connections_than_the_pool_holds_lose_nothing(standalone_buffer):
    """A greenlet kept the Redis connection it recorded on as long as it lived, as a thread of a
    WSGI server does: the 4th open client connection of a process whose pool holds 3 (redis-py's
    default: 100, where a gevent worker serves up to 1,000) lost every impression it served
    (MaxConnectionsError) while the first three stayed open."""
    url = with_option(settings.IMPRESSIONS_REDIS_URL, "max_connections=3")
    results, holders = record_in_greenlets(url, 8)
    assert results == [[3, 0]] * 8
    assert holders == 8


def test_a_cluster_node_pool_too(cluster_buffer, redis_cluster_url):
    """On a cluster, each node's pool holds max_connections: 12 greenlets kept open over 3
    nodes' pools of 2 held more than 2 connections of one node at least."""
    url = with_option(redis_cluster_url, "max_connections=2")
    results, holders = record_in_greenlets(url, 12)
    assert results == [[3, 0]] * 12
    assert holders == 12


def test_an_app_loaded_before_the_patching_records_each_greenlet_apart(standalone_buffer):
    """gunicorn --preload: the app is imported, and its first call made, before the gevent worker
    patches threading, so the thread-local that held each thread's connection was the unpatched
    one, shared by every greenlet of the process: greenlets took one another's connection,
    mid-call."""
    results, holders = record_in_greenlets(settings.IMPRESSIONS_REDIS_URL, 40, preload=True)
    assert results == [[3, 0]] * 40
    # Shared, they lost impressions only when two calls met on the connection (2 runs in 5).
    assert holders == 40


def test_an_app_loaded_before_the_patching_builds_its_client_without_freezing(standalone_buffer):
    """gunicorn --preload, the master making no call: the greenlets' first calls build the
    client, which asks the server whether it is a cluster (IMPRESSIONS_REDIS_CLUSTER "auto"),
    under a lock made before the patching, a real one. The first greenlet yielded in that
    question, the second blocked the process's only thread on the lock: the worker froze."""
    url = settings.IMPRESSIONS_REDIS_URL
    results, holders = record_in_greenlets(url, 4, preload=True, warm=False, timeout=15)
    assert results == [[3, 0]] * 4
    assert holders == 4
