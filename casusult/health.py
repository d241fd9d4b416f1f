"""Liveness (/healthz) and readiness (/readyz) probes for load balancers, ECS and Kubernetes.

Readiness asks every registered dependency at once, each in its own thread, and answers within
READINESS_TIMEOUT seconds whatever they do: a hung database connect must not hang the probe.
"""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django.conf import settings
from django.db import connections
from django.http import JsonResponse
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends

import impressions

from .metrics import metrics_view

logger = logging.getLogger(__name__)

# Seconds a single Redis probe may take; the request path uses an even shorter one.
REDIS_PROBE_TIMEOUT = 0.2
DEFAULT_READINESS_TIMEOUT = 1.0

# name -> callable() returning a short detail string, raising when the dependency is down.
PROBES = {}

# Reused threads: a probe stuck on a dead host keeps one thread, later probes still answer.
_executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="readyz")
# The probe of each dependency still running, if any: a later /readyz waits on it instead of
# starting another, so a hung dependency holds one thread, never the whole pool.
_in_flight = {}
_in_flight_lock = threading.Lock()


def probe(name):
    """Register a readiness probe under `name` (one entry of /readyz)."""

    def register(function):
        PROBES[name] = function
        return function

    return register


@probe("database")
def probe_database():
    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        # The probe thread is not a request: nothing else would close its connection.
        connection.close()
    return connection.vendor


@probe("impression_buffer")
def probe_impression_buffer():
    return impressions.ping(timeout=REDIS_PROBE_TIMEOUT)


@probe("queue")
def probe_queue():
    backend = task_backends[DEFAULT_TASK_BACKEND_ALIAS]
    # RQ: PING; SQS: GetQueueUrl. A backend without ping (Immediate, Dummy) runs in-process.
    if hasattr(backend, "ping"):
        backend.ping()
    return type(backend).__name__


def readiness_timeout():
    return getattr(settings, "READINESS_TIMEOUT", DEFAULT_READINESS_TIMEOUT)


def run_probes(probes=None, timeout=None):
    """{name: {"ok", "ms", "detail" or "error"}} for every probe, within `timeout` seconds."""
    probes = PROBES if probes is None else probes
    timeout = readiness_timeout() if timeout is None else timeout
    started = time.monotonic()
    futures = {name: _submit_once(name, function) for name, function in probes.items()}
    results = {}
    for name, future in futures.items():
        remaining = max(0.0, timeout - (time.monotonic() - started))
        try:
            results[name] = future.result(timeout=remaining)
        except FutureTimeout:
            logger.warning("readiness: %s gave no answer within %g s", name, timeout)
            results[name] = {"ok": False, "error": f"no answer within {timeout:g} s"}
    return results


def _submit_once(name, function):
    with _in_flight_lock:
        future = _in_flight.get(name)
        if future is None or future.done():
            future = _in_flight[name] = _executor.submit(_timed, name, function)
        return future


def _timed(name, function):
    started = time.monotonic()
    try:
        detail = function()
    except Exception as error:
        # Only the class reaches the (public) response; the message, with host names, is logged.
        logger.warning("readiness: %s is down: %s: %s", name, type(error).__name__, error)
        return {"ok": False, "error": type(error).__name__}
    return {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1), "detail": detail}


def healthz(request):
    """Liveness: the process answers. No dependency is asked (a Redis outage must not restart us)."""
    return JsonResponse({"status": "ok"})


def readyz(request):
    """Readiness: 200 when every dependency answers, else 503, one entry per dependency."""
    checks = run_probes()
    ready = all(check["ok"] for check in checks.values())
    response = JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )
    # Each down dependency was logged above; Django's "Service Unavailable" error line every
    # few seconds of probing would only bury it.
    response._has_been_logged = True
    return response


def metrics(request):
    return metrics_view(request)


PROBE_VIEWS = {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics}


class ProbeMiddleware:
    """Answers the probe paths before host validation and the HTTPS redirect run.

    Load balancer health checks use the target's IP as Host and plain HTTP.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        view = PROBE_VIEWS.get(request.path_info.rstrip("/") or "/")
        if view is not None and request.method in ("GET", "HEAD"):
            response = view(request)
            response["Cache-Control"] = "no-store"
            return response
        return self.get_response(request)
