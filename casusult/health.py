"""Liveness (/healthz) and readiness (/readyz) probes for load balancers, ECS and Kubernetes.

Readiness asks every registered dependency at once, each in its own thread, and answers within
READINESS_TIMEOUT seconds whatever they do: a hung database connect must not hang the probe.
"""

import ipaddress
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django.conf import settings
from django.core import checks
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS, connections
from django.dispatch import receiver
from django.http import JsonResponse

import impressions
import queues.health
from redis_endpoints import redact_text

from .methods import api_safe_methods
from .metrics import metrics_view

logger = logging.getLogger(__name__)

# Seconds a single Redis probe may take; the request path uses an even shorter one.
REDIS_PROBE_TIMEOUT = 0.2
DEFAULT_READINESS_TIMEOUT = 1.0
# Who sees /readyz's details (timings, backends, error messages): loopback only, unless
# HEALTH_DETAIL_NETWORKS says otherwise. Everyone else gets ok / not ok per check.
DEFAULT_DETAIL_NETWORKS = ("127.0.0.0/8", "::1/128")
# A request that came through a proxy is never local, whatever its REMOTE_ADDR.
PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")
# Seconds a process reuses its last /readyz answer: a client probing in a loop costs the
# dependencies one probe a second per process, whatever its rate.
READINESS_CACHE_SECONDS = 1.0
# A failing probe's lines: the first at once, then one every READINESS_LOG_INTERVAL seconds at most
# for each probe, saying how many failures it stands for, and one when the probe answers again (a
# Kubernetes probe every second per pod would otherwise log a line a second per process).
READINESS_LOG_INTERVAL = 60.0
# Check ids: casusult.E001 HEALTH_DETAIL_NETWORKS lists something that is not a network;
# casusult.W001 a middleware runs before ProbeMiddleware.

# name -> callable() returning a short detail string, raising when the dependency is down.
PROBES = {}

# Reused threads: a probe stuck on a dead host keeps one thread, later probes still answer.
_executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="readyz")
# The probe of each dependency still running, if any, with when it started: a later /readyz
# waits on it instead of starting another, so a hung dependency holds one thread, never the pool.
_in_flight = {}
_in_flight_lock = threading.Lock()


def probe(name):
    """Register a readiness probe under `name` (one entry of /readyz)."""

    def register(function):
        PROBES[name] = function
        return function

    return register


# The database probe's own connection, kept between probes: one per process, instead of a new
# PostgreSQL connection per /readyz (the probes run in pool threads, whose connections Django
# would never reuse or close). Only one database probe runs at a time (_submit_once).
_probe_connection = None
_probe_connection_lock = threading.Lock()


def probe_connection():
    global _probe_connection
    with _probe_connection_lock:
        if _probe_connection is None:
            _probe_connection = connections.create_connection(DEFAULT_DB_ALIAS)
            _probe_connection.inc_thread_sharing()  # probed from pool threads, closed from any
        return _probe_connection


def close_probe_connection():
    """Close the database probe's connection (the next probe opens another)."""
    global _probe_connection
    with _probe_connection_lock:
        connection, _probe_connection = _probe_connection, None
    if connection is not None:
        connection.close()


class ReadOnlyDatabase(Exception):
    """The database answers but takes no writes: every flush, login and admin save fails."""


# PostgreSQL: whether the session's transactions are read-only, in the probe's one round trip.
# "on" on a hot standby (a replica, a reader endpoint, a primary demoted by a failover) and where
# default_transaction_read_only is set for the role or database.
READ_ONLY_QUERY = {"postgresql": "SELECT current_setting('transaction_read_only') = 'on'"}


@probe("database")
def probe_database():
    for attempt in (1, 2):
        connection = probe_connection()
        reused = connection.connection is not None
        try:
            with connection.cursor() as cursor:
                cursor.execute(READ_ONLY_QUERY.get(connection.vendor, "SELECT 0"))
                read_only = cursor.fetchone()[0]
            if read_only:
                raise ReadOnlyDatabase(
                    "the database takes no writes (transaction_read_only is on: a replica or a"
                    " reader endpoint, a primary in the middle of a failover, or"
                    " default_transaction_read_only set for the role or database); flushes,"
                    " logins and admin saves fail: DATABASE_URL must lead to the primary"
                )
            if getattr(connection, "pool", None) is not None:
                # Django's pool (OPTIONS "pool") keeps connections between probes itself: kept
                # here, this one would be out of it for good.
                close_probe_connection()
            return connection.vendor
        except Exception as error:
            close_probe_connection()  # read-only too: the next probe connects anew (a failover)
            if attempt == 2 or not reused or isinstance(error, ReadOnlyDatabase):
                raise
            # A kept connection the server has closed meanwhile (a restart, an idle timeout):
            # once more with a new one before calling the database down.
    raise AssertionError("unreachable")


@probe("migrations")
def probe_migrations():
    # Looks at most every queues.health.MIGRATIONS_RECHECK_SECONDS, never again once all are
    # applied, on its pool thread's connection, closed after (the database probe's kept one is in
    # use meanwhile).
    return queues.health.probe_migrations()


@probe("impression_buffer")
def probe_impression_buffer():
    return impressions.ping(timeout=REDIS_PROBE_TIMEOUT)


@probe("queue")
def probe_queue():
    return queues.health.probe_queue()


def readiness_timeout():
    return getattr(settings, "READINESS_TIMEOUT", DEFAULT_READINESS_TIMEOUT)


def run_probes(probes=None, timeout=None):
    """{name: {"ok", "ms", "detail" or "error"}} for every probe, within `timeout` seconds."""
    return probes_since(probes, timeout)[0]


def probes_since(probes=None, timeout=None):
    """(run_probes' answer, when the oldest of its probes started): an answer is as old as the
    first question it holds, not as the moment it came (a probe that began before an outage,
    or one still running that this call waits on, may say ok after the outage began)."""
    probes = PROBES if probes is None else probes
    timeout = readiness_timeout() if timeout is None else timeout
    started = time.monotonic()
    submitted = {name: _submit_once(name, function) for name, function in probes.items()}
    oldest = min((since for _, since in submitted.values()), default=started)
    results = {}
    for name, (future, _) in submitted.items():
        remaining = max(0.0, timeout - (time.monotonic() - started))
        try:
            results[name] = future.result(timeout=remaining)
        except FutureTimeout:
            failed(name, f"gave no answer within {timeout:g} s")
            results[name] = {"ok": False, "error": f"no answer within {timeout:g} s"}
    return results, oldest


def _submit_once(name, function):
    """(the future of `name`'s probe, when it started): the one still running, or a new one."""
    with _in_flight_lock:
        future, since = _in_flight.get(name, (None, 0.0))
        if future is None or future.done():
            since = time.monotonic()
            future = _executor.submit(_timed, name, function)
            _in_flight[name] = (future, since)
        return future, since


def _timed(name, function):
    started = time.monotonic()
    try:
        detail = function()
    except Exception as error:
        failed(name, f"is down: {type(error).__name__}: {error}")
        # Shown only to HEALTH_DETAIL_NETWORKS, redacted even there.
        message = redact_text(f"{type(error).__name__}: {error}")[:300]
        return {"ok": False, "error": message}
    answered(name)
    return {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1), "detail": detail}


class ProbeLines:
    """Which failing probes may have a log line now: a probe's first failure at once, then one
    line every `interval` seconds at most, and one when it answers again."""

    def __init__(self, interval, clock=time.monotonic):
        self.interval = interval
        self.clock = clock
        self.lock = threading.Lock()
        self.failing = {}  # probe: [when its next line may come, its failures in no line yet]

    def failed(self, name):
        """Failures of `name` a line may say now (this one included), or None while its last
        line is less than `interval` old (this failure waits for the next)."""
        with self.lock:
            now = self.clock()
            entry = self.failing.get(name)
            if entry is not None and now < entry[0]:
                entry[1] += 1
                return None
            self.failing[name] = [now + self.interval, 0]
            return 1 + (entry[1] if entry is not None else 0)

    def answered(self, name):
        """`name` answers: its failures in no line yet, or None when it was not failing."""
        if name not in self.failing:  # a hint, without the lock: the usual case costs nothing
            return None
        with self.lock:
            entry = self.failing.pop(name, None)
            return None if entry is None else entry[1]


failures = ProbeLines(READINESS_LOG_INTERVAL)


def failed(name, what):
    """Log that probe `name` failed (`what`: "is down: …"), unless it has had a line in the last
    READINESS_LOG_INTERVAL: then the next line counts this failure."""
    count = failures.failed(name)
    if count is not None:
        more = count - 1
        logger.warning(
            "readiness: %s %s%s",
            name,
            what,
            f"; {more} more failed probe{'s' if more > 1 else ''} since the last such line"
            if more
            else "",
            extra={"probe": name, "failures": count},
        )


def answered(name):
    """Probe `name` answered: if it was failing, one line says it is up again."""
    unsaid = failures.answered(name)
    if unsaid is not None:
        logger.warning(
            "readiness: %s answers again%s",
            name,
            f" ({unsaid} failed probe{'s' if unsaid > 1 else ''} since the last line)"
            if unsaid
            else "",
            extra={"probe": name, "failures": unsaid},
        )


_answer = {"checks": None, "at": 0.0}
_answer_lock = threading.Lock()


def cached_probes():
    """run_probes(), reused for READINESS_CACHE_SECONDS after its first probe started, within
    this process."""
    with _answer_lock:
        if _answer["checks"] is not None and (
            time.monotonic() - _answer["at"] < READINESS_CACHE_SECONDS
        ):
            return _answer["checks"]
    found, since = probes_since()
    with _answer_lock:
        _answer.update(checks=found, at=since)
    return found


@receiver(setting_changed)
def forget_answer(**kwargs):
    """A test that changes a setting probes afresh."""
    with _answer_lock:
        _answer.update(checks=None, at=0.0)


def detail_networks():
    """The networks of HEALTH_DETAIL_NETWORKS (invalid entries are left out: casusult.E001)."""
    networks = []
    for entry in getattr(settings, "HEALTH_DETAIL_NETWORKS", DEFAULT_DETAIL_NETWORKS):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            continue
    return networks


def shows_details(request):
    """Whether `request` may see the probes' details: it came straight (no proxy header) from an
    address of HEALTH_DETAIL_NETWORKS."""
    if any(header in request.META for header in PROXY_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in detail_networks())


def check_detail_networks(app_configs=None, **kwargs):
    """casusult.E001: every HEALTH_DETAIL_NETWORKS entry is an IP network."""
    entries = getattr(settings, "HEALTH_DETAIL_NETWORKS", DEFAULT_DETAIL_NETWORKS)
    errors = []
    for entry in [entries] if isinstance(entries, str) else entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except (TypeError, ValueError):
            errors.append(
                checks.Error(
                    f"HEALTH_DETAIL_NETWORKS lists {entry!r}, which is not an IP network.",
                    hint="Give addresses or CIDR networks, e.g. 127.0.0.0/8,10.0.0.0/16.",
                    id="casusult.E001",
                )
            )
    return errors


@api_safe_methods
def healthz(request):
    """Liveness: the process answers. No dependency is asked (a Redis outage must not restart us)."""
    return JsonResponse({"status": "ok"})


@api_safe_methods
def readyz(request):
    """Readiness: 200 when every dependency answers, else 503, one entry per dependency: only
    {"ok": …} unless the request may see the details (shows_details)."""
    found = cached_probes()
    ready = all(check["ok"] for check in found.values())
    if not shows_details(request):
        found = {name: {"ok": check["ok"]} for name, check in found.items()}
    response = JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": found},
        status=200 if ready else 503,
    )
    # Each down dependency was logged above (failed(): one line a minute at most); Django's
    # "Service Unavailable" error line every few seconds of probing would only bury it.
    response._has_been_logged = True
    return response


@api_safe_methods
def metrics(request):
    return metrics_view(request)


PROBE_VIEWS = {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics}


PROBE_MIDDLEWARE = "casusult.health.ProbeMiddleware"


def check_probes_first(app_configs=None, **kwargs):
    """casusult.W001: ProbeMiddleware is first in MIDDLEWARE, so that no middleware validates a
    probe's Host before it answers. OpenTelemetry's Django instrumentation puts its own first, and
    it reads the Host (request.build_absolute_uri()): a balancer's probe by IP answered 400."""
    middleware = list(settings.MIDDLEWARE)
    if PROBE_MIDDLEWARE not in middleware or middleware[0] == PROBE_MIDDLEWARE:
        return []
    before = ", ".join(middleware[: middleware.index(PROBE_MIDDLEWARE)])
    return [
        checks.Warning(
            f"{PROBE_MIDDLEWARE} is not first in MIDDLEWARE: {before} runs before it, and a"
            " middleware that reads the Host header refuses a load balancer's probe by IP"
            " (400, DisallowedHost), which then takes every target out of service.",
            hint=(
                f"Put {PROBE_MIDDLEWARE} first. OpenTelemetry's Django instrumentation inserts its"
                " middleware first unless told otherwise: set"
                " OTEL_PYTHON_DJANGO_MIDDLEWARE_POSITION=1."
            ),
            id="casusult.W001",
        )
    ]


class ProbeMiddleware:
    """Answers the probe paths before host validation and the HTTPS redirect run.

    Load balancer health checks use the target's IP as Host and plain HTTP.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        view = PROBE_VIEWS.get(request.path_info.rstrip("/") or "/")
        if view is not None:  # another method: the view's 405, not the HTTPS redirect
            response = view(request)
            response["Cache-Control"] = "no-store"
            # What of the security headers a probe's JSON or text needs: the middleware that
            # sends the others runs after this one (docs/operations/security.md).
            response["X-Content-Type-Options"] = "nosniff"
            response["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'none'"
            return response
        return self.get_response(request)
