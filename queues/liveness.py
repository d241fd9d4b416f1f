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
        SLOT.pack_into(self._memory, SLOT.size * self.slot, time.monotonic())
        try:
            yield
        finally:
            SLOT.pack_into(self._memory, SLOT.size * self.slot, 0.0)

    def clear(self, slot):
        """A worker process that died mid-task runs nothing any more."""
        SLOT.pack_into(self._memory, SLOT.size * slot, 0.0)

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
