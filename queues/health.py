"""`runworker --health-port`: the worker answers the same probes as the web (ECS, Kubernetes).

The worker has no web server, so a small threaded WSGI server runs the project's own Django
application in a daemon thread, limited to the probe paths: where the project routes them (the
demo site does), /readyz asks the same dependencies as the web's and /metrics shows this worker's
counters. Where the project does not (its URLconf answers 404), the worker answers itself:
/healthz as below, /readyz from the database, its migrations and the default task backend,
/metrics with prometheus_client's registry of this process if that library is installed.
"""

import json
import logging
import os
import threading
import time
import weakref
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.core.wsgi import get_wsgi_application
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends

from redis_endpoints import redacting_logger

from . import liveness

logger = redacting_logger("queues.worker")

HEALTH_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Seconds between two looks at the database's migrations while some are unapplied (a look loads
# Django's migration graph: tens of ms, more with many apps). Once all are, none again.
MIGRATIONS_RECHECK_SECONDS = 5.0


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a probe in flight never holds up the worker's exit


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        """Probes every few seconds would bury the task log lines."""


def stalled(stall_after):
    """The /healthz answer of a worker whose task overran `stall_after` seconds, or None."""
    running = liveness.CLOCK.longest_running()
    if not stall_after or running <= stall_after:
        return None
    return {
        "status": "stalled",
        "detail": f"a task has been running for {running:.0f} s, past JOB_TIMEOUT and a"
        f" {liveness.STALL_GRACE} s grace ({stall_after:.0f} s): the worker is wedged, restart it",
    }


_probing = threading.local()


class QuietNotFound(logging.Filter):
    """Drops django.request's "Not Found: /healthz" of a project without probe routes: the
    worker answers those itself, every few seconds."""

    def filter(self, record):
        return not (getattr(_probing, "active", False) and getattr(record, "status_code", 0) == 404)


def probe_application(stall_after=None):
    """The Django WSGI application, 404 outside HEALTH_PATHS; /healthz fails when stalled."""
    application = get_wsgi_application()
    request_log = logging.getLogger("django.request")
    if not any(isinstance(known, QuietNotFound) for known in request_log.filters):
        request_log.addFilter(QuietNotFound())

    def only_probes(environ, start_response):
        path = environ.get("PATH_INFO", "").rstrip("/")
        if path not in HEALTH_PATHS:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        if path == "/healthz" and (answer := stalled(stall_after)):
            # The reason goes to the log; the probe's caller learns only that it is stalled.
            logger.warning("Worker stalled: %s", answer["detail"])
            start_response("503 Service Unavailable", [("Content-Type", "application/json")])
            return [json.dumps({"status": answer["status"]}).encode()]
        answered = {}

        def keep(status, headers, exc_info=None):
            answered.update(status=status, headers=headers)
            return lambda data: None  # Django's handler never writes through it

        _probing.active = True  # its 404 is no news: the worker answers (QuietNotFound)
        try:
            body = application(environ, keep)
        finally:
            _probing.active = False
        if not answered["status"].startswith("404"):
            start_response(answered["status"], answered["headers"])
            return body
        if hasattr(body, "close"):
            body.close()
        status, content_type, content = BUILT_IN[path]()
        start_response(status, [("Content-Type", content_type)])
        return [content]

    return only_probes


def own_healthz():
    return "200 OK", "application/json", json.dumps({"status": "ok"}).encode()


def own_readyz():
    """Ready when the default database answers, has every migration applied, and the default task
    backend answers; the reasons go to the log, the caller learns only which failed."""
    checks = {}
    probes = (
        ("database", probe_database),
        ("migrations", probe_migrations),
        ("queue", probe_queue),
    )
    for name, probe in probes:
        try:
            probe()
            checks[name] = {"ok": True}
        except Exception as error:
            logger.warning("Worker readiness: %s failed (%s)", name, type(error).__name__)
            checks[name] = {"ok": False}
    ready = all(check["ok"] for check in checks.values())
    body = {"status": "ok" if ready else "unavailable", "checks": checks}
    return (
        ("200 OK" if ready else "503 Service Unavailable"),
        "application/json",
        json.dumps(body).encode(),
    )


def probe_database():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()  # this probe thread's own connection, never left open


class UnappliedMigrations(Exception):
    """The database lacks migrations of the installed apps: their code cannot run against it."""


class MigrationsUnknown(Exception):
    """The database's migrations could not be read (the database is down, most likely)."""


class Migrations:
    """Whether the database has every migration of the installed apps, for /readyz.

    New code that reaches its servers before its `migrate` ran fails every page and every task
    (`relation … does not exist`) while the database answers SELECT 1. A process's code does not
    change, so once everything is applied nothing is asked again; until then, at most one look
    every MIGRATIONS_RECHECK_SECONDS (the answers in between repeat the last one), on a
    connection it closes after: /readyz costs PostgreSQL the same however often it is called."""

    def __init__(self, connect=None):
        # () -> the connection to look with, closed after each look: this thread's connection of
        # the default database (Django's MigrationRecorder queries through its alias, so a
        # connection of its own would leave this thread's open for good).
        self.connect = connect or (lambda: connections[DEFAULT_DB_ALIAS])
        self._lock = threading.Lock()
        self._applied = False
        # (exception class, message) of the last look that found something wrong, and when that
        # look began. A failed look (the database down) is held as long as a missing migration.
        self._last = None
        self._looked_at = 0.0

    def check(self):
        """Return "all applied", or raise UnappliedMigrations (naming them) or MigrationsUnknown."""
        with self._lock:
            if self._applied:
                return "all applied"
            now = time.monotonic()
            if self._last is None or now - self._looked_at >= MIGRATIONS_RECHECK_SECONDS:
                self._last, self._looked_at = self._look(), now
                self._applied = self._last is None
            if self._applied:
                return "all applied"
            error_class, message = self._last
        raise error_class(message)

    def _look(self):
        """None when every migration is applied, else (exception class, message)."""
        database = self.connect()
        try:
            executor = MigrationExecutor(database)
            plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        except Exception as error:
            return MigrationsUnknown, f"{type(error).__name__}: {error}"
        finally:
            database.close()
        if not plan:
            return None
        names = [f"{migration.app_label}.{migration.name}" for migration, _ in plan]
        listed = ", ".join(names[:5]) + (", …" if len(names) > 5 else "")
        return UnappliedMigrations, f"{len(names)} not applied: {listed}; run manage.py migrate"


# This process's: the web's /readyz (through the site's probe) and the worker's share it.
MIGRATIONS = Migrations()


def probe_migrations():
    """Raise unless the default database has every migration of the installed apps."""
    return MIGRATIONS.check()


def probe_queue():
    """Raise unless the default task backend answers; returns its class's name. RQ: PING; SQS:
    GetQueueUrl; a backend without ping (Immediate, Dummy) has no queue to reach."""
    backend = task_backends[DEFAULT_TASK_BACKEND_ALIAS]
    if hasattr(backend, "ping"):
        backend.ping()
    return type(backend).__name__


def warm_up_queue():
    """Build now what probe_queue() needs (the backend's warm_up(): SQS builds its boto3 client),
    so that a process's first /readyz times the call, not the client's construction. Called where
    a process starts serving probes; a failure is left for /readyz to report."""
    try:
        backend = task_backends[DEFAULT_TASK_BACKEND_ALIAS]  # none: /readyz says so
        if hasattr(backend, "warm_up"):
            backend.warm_up()
    except Exception as error:
        logger.warning("Could not build the task backend's client yet (%s: %s)",
                       type(error).__name__, error)  # fmt: skip


def own_metrics():
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
    except ImportError:
        return (
            "404 Not Found",
            "text/plain",
            b"no /metrics: route one in the project's URLconf, or install prometheus_client\n",
        )
    return "200 OK", CONTENT_TYPE_LATEST, generate_latest(REGISTRY)


# What the worker answers where the project's URLconf has no such path.
BUILT_IN = {"/healthz": own_healthz, "/readyz": own_readyz, "/metrics": own_metrics}


def bind_health_server(port, host="127.0.0.1", job_timeout=None):
    """The probe server, listening on host:port (port 0: any) but not serving yet.

    Bound first, so a busy port fails `runworker` before it forks workers; served (a thread) only
    after the fork, as a process must not fork once it runs threads.
    With `job_timeout`, /healthz answers 503 once a task has run STALL_GRACE seconds past it.
    """
    server = make_server(
        host, port, probe_application(liveness.stall_limit(job_timeout)),
        server_class=ThreadingWSGIServer, handler_class=QuietHandler,
    )  # fmt: skip
    # A forked process (RQ's scheduler, a --concurrency worker) must not keep the listening
    # socket: outliving a killed worker, it would hold the port, and the restarted worker would
    # fail with "Address already in use".
    bound = weakref.ref(server)

    def close_in_child():
        if (alive := bound()) is not None:
            alive.socket.close()

    os.register_at_fork(after_in_child=close_in_child)
    return server


def serve_in_background(server):
    warm_up_queue()
    thread = threading.Thread(target=server.serve_forever, name="worker-health", daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    logger.info(
        "Worker health probes on http://%s:%d/ (%s)",
        host,
        port,
        ", ".join(sorted(HEALTH_PATHS)),
    )
    return server
