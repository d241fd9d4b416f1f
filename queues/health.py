"""`runworker --health-port`: the worker answers the same probes as the web (ECS, Kubernetes).

The worker has no web server, so a small threaded WSGI server runs the project's own Django
application in a daemon thread, limited to the probe paths: /readyz asks the same dependencies
(database, impression buffer, queue) and /metrics shows this worker's task counters.
"""

import logging
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

logger = logging.getLogger("queues.worker")

HEALTH_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a probe in flight never holds up the worker's exit


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        """Probes every few seconds would bury the task log lines."""


def probe_application(paths=HEALTH_PATHS):
    """The Django WSGI application, answering 404 outside `paths`."""
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()

    def only_probes(environ, start_response):
        if environ.get("PATH_INFO", "").rstrip("/") not in paths:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        return application(environ, start_response)

    return only_probes


def start_health_server(port, host="127.0.0.1", paths=HEALTH_PATHS):
    """Serve the probes on host:port from a daemon thread; returns the server (port 0: any)."""
    server = make_server(
        host, port, probe_application(paths),
        server_class=ThreadingWSGIServer, handler_class=QuietHandler,
    )  # fmt: skip
    thread = threading.Thread(target=server.serve_forever, name="worker-health", daemon=True)
    thread.start()
    logger.info(
        "Worker health probes on http://%s:%d/ (%s)",
        host,
        server.server_port,
        ", ".join(sorted(paths)),
    )
    return server
