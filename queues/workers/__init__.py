"""Worker loops, one per backend; `run_workers` runs one in-process or several as child processes."""

import contextlib
import logging
import os
import signal

from django.db import connections

from .. import liveness

logger = logging.getLogger("queues.worker")


def run_workers(backend, *, queues=None, burst=False, max_jobs=None, concurrency=1, probes=None):
    """Run `concurrency` workers of `backend`; return the exit code (0 when all stopped cleanly).

    `probes`: a bound queues.health server, served by this process once its workers are forked.
    """
    from ..health import serve_in_background

    worker = backend.make_worker(queues=queues, burst=burst, max_jobs=max_jobs)
    if concurrency == 1:
        if probes:
            serve_in_background(probes)
        return worker.run()
    # One process per worker: tasks are CPU-bound Python and the database is the bottleneck, not
    # the poll. Forked children must not share the parent's database sockets.
    connections.close_all()
    clock = liveness.share_between(concurrency)
    children = []
    for slot in range(concurrency):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                if probes:
                    probes.server_close()  # the parent's listening socket, not this worker's
                clock.use_slot(slot)
                code = backend.make_worker(queues=queues, burst=burst, max_jobs=max_jobs).run()
            finally:
                os._exit(code)
        children.append(pid)
    if probes:
        serve_in_background(probes)  # threads only now: nothing forks after this

    def forward(signum, frame):
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = []
    for child in children:
        _, status = os.waitpid(child, 0)
        codes.append(os.waitstatus_to_exitcode(status))
    logger.info("All %d workers stopped (exit codes %s)", concurrency, codes)
    return 0 if all(code == 0 for code in codes) else 1
