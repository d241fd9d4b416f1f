"""The session's services (Redis Clusters, a TLS Redis, moto), started in the background as soon
as the tests are collected, for the tests that will need them.

A Redis Cluster takes over 2 s to come up whatever the machine (each primary serves only 2 s
after its start: CLUSTER_WRITABLE_DELAY), the TLS one more with its certificates, moto about
0.5 s; started by the first test that needs one, each of those seconds was the suite's. Started
here, they pass while the first tests run; the fixture then takes the started service (or waits
for the rest of its start).
"""

import contextlib
import functools
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

import devservices

# Fixture name: (the variable naming an existing one instead, what it is, what makes it).
SERVICES = {
    "redis_cluster_url": (
        "TEST_REDIS_CLUSTER_URL",
        "a Redis Cluster",
        devservices.RedisClusterProcess,
    ),
    "redis_tls_cluster_url": (
        "TEST_REDIS_TLS_CLUSTER_URL",
        "a TLS Redis Cluster",
        functools.partial(devservices.RedisClusterProcess, tls=True),
    ),
    "redis_tls_url": ("TEST_REDIS_TLS_URL", "a TLS Redis", devservices.RedisTlsServerProcess),
    "sqs_endpoint_url": (
        "TEST_SQS_ENDPOINT_URL",
        "the SQS-protocol server",
        devservices.MotoServerProcess,
    ),
    # Of the impressions tests that move slots, never a URL from the environment.
    "private_cluster": (None, "a private Redis Cluster", devservices.RedisClusterProcess),
}


def register(name, what, make):
    """A service of a test module's own (its fixture `name` takes it with started(name)), made
    by make() and started in the background like the others; called at the module's import."""
    SERVICES[name] = (None, what, make)


# Fixtures that ask for another by name, with request.getfixturevalue(), on a parameter's value:
# (fixture, parameter value): the service it asks for. Not in a test's fixture closure.
ASKED_BY_PARAMETER = {
    ("buffer", "cluster"): "redis_cluster_url",
    ("private_buffer", "cluster"): "private_cluster",
}

_starting = {}  # fixture name: the Future of its service's start()
_executor = None


def needed(item):
    """The names of SERVICES the test `item` will ask for."""
    names = set(getattr(item, "fixturenames", ()))
    callspec = getattr(item, "callspec", None)
    for name, value in callspec.params.items() if callspec else ():
        if isinstance(value, str):
            names.add(value)  # a parameter naming the fixture to ask for
            names.add(ASKED_BY_PARAMETER.get((name, value), ""))
    return names & SERVICES.keys()


def start_in_background(items):
    """Start the services `items` need (but those the environment names) in threads."""
    global _executor
    wanted = set().union(*(needed(item) for item in items)) if items else set()
    wanted = {
        name for name in wanted if not (SERVICES[name][0] and os.environ.get(SERVICES[name][0]))
    }
    if not wanted:
        return
    _executor = ThreadPoolExecutor(max_workers=len(wanted), thread_name_prefix="service")
    for name in sorted(wanted):
        _starting[name] = _executor.submit(_start, name)


def _start(name):
    return SERVICES[name][2]().start()


def started(name):
    """The service of fixture `name`, started (fails the test if it could not start): the one
    started in the background if any (once), else one started now. The caller stops it."""
    future = _starting.pop(name, None)
    try:
        return future.result() if future else _start(name)
    except devservices.ServiceUnavailable as error:
        pytest.fail(f"Cannot start {SERVICES[name][1]} for the tests: {error}")


def stop_unused():
    """Stop what was started in the background for tests that did not run (-x, Ctrl-C)."""
    for future in _starting.values():
        # One that did not start raises: start() stopped what it had.
        with contextlib.suppress(devservices.ServiceUnavailable):
            future.result().stop()
    _starting.clear()
    if _executor:
        _executor.shutdown()
