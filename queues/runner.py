"""Run a backend's worker in this process, or several as forked child processes (`runworker`)."""

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading

from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from redis_endpoints import redacting_logger

from . import liveness
from .health import serve_in_background

logger = redacting_logger("queues.worker")


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def unreachable_errors(worker_class):
    """Errors that mean the queue server is down or misaddressed, reported without a traceback."""
    return (ConnectionError, *getattr(worker_class, "unreachable_errors", ()))


def remedy_text(worker_class, error):
    """ "; what to do." for one of unreachable_errors, if the worker class knows, else ""."""
    remedy = getattr(worker_class, "remedy", lambda error: "")(error)
    return f"; {remedy}." if remedy else ""


def run_workers(worker_class, backend, *, concurrency=1, probes=None, **worker_options):
    """Run `concurrency` worker_class(backend, **worker_options); return the exit code (0 when
    all stopped cleanly).

    `probes`: a bound queues.health server, served by this process once its workers are forked.
    """
    # Built here also with --concurrency: bad arguments fail once, before any fork.
    worker = worker_class(backend, **worker_options)
    if concurrency == 1:
        if probes:
            serve_in_background(probes)
        with stop_handlers(exit_before_start):  # until the worker installs its own
            return worker.run()
    # One process per worker: tasks are CPU-bound Python and the database is the bottleneck, not
    # the poll. Forked children must not share the parent's database sockets.
    close_databases()
    clock = liveness.share_between(concurrency)
    children = {}  # pid -> slot
    stop_requested = threading.Event()
    # A stop signal arriving while we fork waits until the forwarding handler is in place.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    parent = os.getpid()
    try:
        for slot in range(concurrency):
            pid = os.fork()
            if pid == 0:
                stop_with_parent(parent)
                run_child(worker_class, backend, worker_options, slot, clock, probes)
            children[pid] = slot

        def forward(signum, frame):
            stop_requested.set()
            for child in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    if probes:
        serve_in_background(probes)  # threads only now: nothing forks after this
    return wait_for_children(children, clock, stop_requested)


def close_databases():
    """Close this process's database connections, and Django's pools of them (OPTIONS "pool"):
    a forked child's copy of an open pool has none of its threads, so it never hands out a new
    connection, and its idle ones are the parent's sockets."""
    connections.close_all()
    for connection in connections.all():
        if getattr(connection, "pool", None) is not None:
            connection.close_pool()


def exit_before_start(signum, frame):
    """A stop signal before the worker has installed its handlers: no task has started, so
    stopping now loses nothing. It exits here rather than raise SystemExit, which is swallowed
    when the signal lands in code that ignores exceptions (an import's module-lock callback, a
    __del__), and the worker would then go on starting."""
    os._exit(0)


@contextlib.contextmanager
def stop_handlers(handler):
    """Handle SIGTERM and SIGINT with `handler` (main thread only); the previous ones after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def stop_with_parent(parent):
    """In a forked worker: a SIGTERM (the worker's own stop) when `parent` dies.

    A parent killed outright (SIGKILL, the OOM killer) cannot forward a stop: its children
    polled on as orphans, without a health port, and each restart of the parent added as many.
    Linux only (prctl); the signal is delivered once it is unblocked.
    """
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the prctl
        os.kill(os.getpid(), signal.SIGTERM)


def run_child(worker_class, backend, worker_options, slot, clock, probes):
    """The body of one forked worker process; never returns."""
    code = 1
    try:
        # Until the worker installs its own handlers (RQ: after its Redis probe).
        signal.signal(signal.SIGTERM, exit_before_start)
        signal.signal(signal.SIGINT, exit_before_start)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        if probes:
            probes.server_close()  # the parent's listening socket, not this worker's
        clock.use_slot(slot)
        code = worker_class(backend, **worker_options).run()
    except unreachable_errors(worker_class) as error:
        logger.error("Worker process %d: the queue server is unreachable or refused: %s%s",
                     os.getpid(), error, remedy_text(worker_class, error))  # fmt: skip
    except ImproperlyConfigured as error:  # e.g. RQ refusing a cluster-mode Redis
        logger.error("Worker process %d: %s", os.getpid(), error)
    except SystemExit as error:
        code = error.code if isinstance(error.code, int) else 1
    except KeyboardInterrupt:
        code = 0  # stopped before its worker had started
    except Exception:
        logger.exception("Worker process %d failed", os.getpid())
    finally:
        logging.shutdown()
        os._exit(code)


def wait_for_children(children, clock, stop_requested):
    """Wait for every child; one that fails while the others run stops them (exit code 1)."""
    codes = {}
    stopping = False
    while len(codes) < len(children):
        pid, status = os.wait()
        if pid not in children:
            continue
        code = codes[pid] = os.waitstatus_to_exitcode(status)
        clock.clear(children[pid])  # a killed child's task is no longer running
        if code == 0 or stopping or stop_requested.is_set():
            continue
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        logger.error(
            "Worker process %d %s; stopping the other workers (they finish their tasks)", pid, how
        )
        stopping = True
        for other in children:
            if other not in codes:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(other, signal.SIGTERM)
    exit_codes = [codes[pid] for pid in children]
    logger.info("All %d workers stopped (exit codes %s)", len(children), exit_codes)
    return 0 if all(code == 0 for code in exit_codes) else 1
