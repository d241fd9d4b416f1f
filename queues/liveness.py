"""When each worker process started the task it is running, for the worker's /healthz.

Both backends stop a task at JOB_TIMEOUT (RQ's death penalty, our SIGALRM for SQS). A task still
running well past that is wedged where a signal cannot reach it (C code, a worker thread), and a
wedged worker must fail its liveness probe so that ECS or Kubernetes restarts it; an SQS worker
would otherwise keep the message hidden for ever with its visibility heartbeat.

One slot per worker process in anonymous shared memory, so the probe server of the parent sees
the children of `runworker --concurrency N`. time.monotonic() is one clock for all processes.
"""

import contextlib
import mmap
import struct
import time

SLOT = struct.Struct("d")
# Seconds past JOB_TIMEOUT before a still-running task counts as wedged: the timeout itself should
# have ended it by then.
STALL_GRACE = 60


def stall_limit(job_timeout):
    """Seconds a task may run before its worker is wedged (None: no JOB_TIMEOUT, no limit)."""
    return job_timeout + STALL_GRACE if job_timeout else None


class TaskClock:
    def __init__(self, slots=1):
        self.slots = slots
        self.slot = 0
        self._memory = mmap.mmap(-1, SLOT.size * slots)  # MAP_SHARED: forked children write here

    def use_slot(self, slot):
        """In a forked worker process: write to this slot from now on."""
        if not 0 <= slot < self.slots:
            raise ValueError(f"slot {slot} outside 0..{self.slots - 1}")
        self.slot = slot

    @contextlib.contextmanager
    def running(self):
        self._write(self.slot, time.monotonic())
        try:
            yield
        finally:
            self.clear(self.slot)

    def clear(self, slot):
        """No task runs in `slot` (also: a worker process that died mid-task)."""
        self._write(slot, 0.0)

    def _write(self, slot, start):
        SLOT.pack_into(self._memory, SLOT.size * slot, start)

    def longest_running(self):
        """Seconds the oldest running task has run; 0.0 when no worker runs one."""
        now = time.monotonic()
        starts = [start for (start,) in SLOT.iter_unpack(self._memory) if start]
        return max((now - start for start in starts), default=0.0)


CLOCK = TaskClock()


def share_between(slots):
    """Before forking `slots` workers: a fresh clock with one slot each (read via liveness.CLOCK)."""
    global CLOCK
    CLOCK = TaskClock(slots)
    return CLOCK
