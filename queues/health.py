"""`runworker --health-port`: the worker answers the same probes as the web (ECS, Kubernetes).

The worker has no web server, so a small threaded WSGI server runs the project's own Django
application in a daemon thread, limited to the probe paths: /readyz asks the same dependencies
(database, impression buffer, queue) and /metrics shows this worker's task counters.
"""

import json
import logging
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.core.wsgi import get_wsgi_application

from . import liveness

logger = logging.getLogger("queues.worker")

HEALTH_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


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


def probe_application(stall_after=None):
    """The Django WSGI application, 404 outside HEALTH_PATHS; /healthz fails when stalled."""
    application = get_wsgi_application()

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
        return application(environ, start_response)

    return only_probes


def bind_health_server(port, host="127.0.0.1", job_timeout=None):
    """The probe server, listening on host:port (port 0: any) but not serving yet.

    Bound first, so a busy port fails `runworker` before it forks workers; served (a thread) only
    after the fork, as a process must not fork once it runs threads.
    With `job_timeout`, /healthz answers 503 once a task has run STALL_GRACE seconds past it.
    """
    return make_server(
        host, port, probe_application(liveness.stall_limit(job_timeout)),
        server_class=ThreadingWSGIServer, handler_class=QuietHandler,
    )  # fmt: skip


def serve_in_background(server):
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
