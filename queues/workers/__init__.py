"""Worker loops, one per backend; `run_workers` runs one in-process or several as child processes."""

import contextlib
import logging
import os
import signal

from django.db import connections

from .. import liveness

logger = logging.getLogger("queues.worker")


def run_workers(backend, *, queues=None, burst=False, max_jobs=None, concurrency=1):
    """Run `concurrency` workers of `backend`; return the exit code (0 when all stopped cleanly)."""
    worker = backend.make_worker(queues=queues, burst=burst, max_jobs=max_jobs)
    if concurrency == 1:
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
                clock.use_slot(slot)
                code = backend.make_worker(queues=queues, burst=burst, max_jobs=max_jobs).run()
            finally:
                os._exit(code)
        children.append(pid)

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
