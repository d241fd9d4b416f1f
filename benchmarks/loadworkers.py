"""Forked load processes: each builds and holds its own workload, then runs it on command until a
deadline shared by all, so N processes load a server at once. Standard library only."""

import contextlib
import itertools
import multiprocessing
import os
import time
from array import array
from dataclasses import dataclass, field

from .harness import ContenderFailed

# Between the command to run and the shared start: every process is waiting by then.
START_DELAY = 0.2


@dataclass
class Outcome:
    """One process's share of one timed run."""

    calls: int
    counted: int  # impressions the calls counted (what the record path returned)
    lost: int  # impressions of calls that failed (the 50 ms timeout)
    elapsed: float
    exhausted: bool  # the prepared calls ran out before the deadline: the rate is a lower bound
    latencies: array = field(default_factory=lambda: array("d"))


@dataclass
class WorkerFailed:
    message: str


def timed_loop(items, call, start_at, seconds, cycle=False):
    """call(item) -> (counted, lost) over `items` from `start_at` (time.time()) for `seconds`.

    Every contender runs through this same loop, so the loop's own cost is the same for all.
    """
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    clock = time.perf_counter
    latencies = array("d")
    append = latencies.append
    calls = counted = lost = 0
    begin = end = clock()
    deadline = begin + seconds
    exhausted = True
    for item in itertools.cycle(items) if cycle else items:
        started = clock()
        item_counted, item_lost = call(item)
        end = clock()
        append(end - started)
        calls += 1
        counted += item_counted
        lost += item_lost
        if end >= deadline:
            exhausted = False
            break
    return Outcome(calls, counted, lost, end - begin, exhausted, latencies)


class WorkerPool:
    """`count` processes forked from this one; make_worker(index) builds each one's worker there.

    `cpus`: every process runs on those CPUs only (set before it builds its worker)."""

    def __init__(self, count, make_worker, cpus=None):
        from django.db import connections

        # A forked child must not share the parent's database socket.
        connections.close_all()
        context = multiprocessing.get_context("fork")
        self.pipes, self.processes = [], []
        for index in range(count):
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=_serve, args=(child_end, make_worker, index, cpus), daemon=True
            )
            process.start()
            if cpus is not None:  # as the child does first: pinned once this returns
                os.sched_setaffinity(process.pid, cpus)
            child_end.close()
            self.pipes.append(parent_end)
            self.processes.append(process)

    @property
    def pids(self):
        return [process.pid for process in self.processes]

    def ask(self, count, method, *args):
        """worker.method(*args) in the first `count` processes at once; their replies in order."""
        return self.ask_each(method, [args] * count)

    def ask_each(self, method, args_of_each):
        """worker.method(*args_of_each[i]) in process i, all at once; their replies in order."""
        return self._send(method, args_of_each)()

    def ask_async(self, count, method, *args):
        """As ask(), returning at once a function that waits for the replies."""
        return self._send(method, [args] * count)

    def _send(self, method, args_of_each):
        pipes = self.pipes[: len(args_of_each)]
        for pipe, args in zip(pipes, args_of_each, strict=True):
            pipe.send((method, tuple(args)))

        def replies():
            received = [pipe.recv() for pipe in pipes]
            failed = [reply.message for reply in received if isinstance(reply, WorkerFailed)]
            if failed:
                raise ContenderFailed(f"a load process failed: {failed[0]}")
            return received

        return replies

    def close(self):
        for pipe in self.pipes:
            with contextlib.suppress(OSError):  # a worker that died already
                pipe.send(None)
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()


def _serve(pipe, make_worker, index, cpus):
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    try:
        worker = make_worker(index)
    except Exception as error:  # reported on every command, so the parent sees why
        worker, broken = None, WorkerFailed(f"set-up: {type(error).__name__}: {error}")
    while (message := pipe.recv()) is not None:
        if worker is None:
            pipe.send(broken)
            continue
        method, args = message
        try:
            reply = getattr(worker, method)(*args)
        except Exception as error:
            reply = WorkerFailed(f"{method}: {type(error).__name__}: {error}")
        pipe.send(reply)
