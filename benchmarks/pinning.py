"""Clients on other hosts, modelled on one machine: the Redis servers the benchmark started pinned
to one CPU, every client process (the load processes, redis-benchmark, the parent that samples
INFO) to the others, so each contender's run leaves the servers the same CPU budget.

Only servers the benchmark itself started are ever pinned (never a shared Redis), and every
pinning is read back from /proc/<pid>/task/*/status (Cpus_allowed_list) before it is trusted.
Linux only (sched_setaffinity). Standard library only.
"""

import contextlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .harness import ContenderFailed


@dataclass(frozen=True)
class Pinning:
    servers: frozenset
    clients: frozenset

    @classmethod
    def split(cls):
        """The lowest CPU this process may use for the servers, the rest for the clients."""
        if not hasattr(os, "sched_setaffinity"):
            raise ContenderFailed("pinning needs Linux (os.sched_setaffinity)")
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise ContenderFailed(f"pinning needs 2 CPUs or more; this process may use {cpus}")
        return cls(frozenset(cpus[:1]), frozenset(cpus[1:]))

    def describe(self):
        return f"servers on CPU {cpu_list(self.servers)}, clients on CPU {cpu_list(self.clients)}"


def cpu_list(cpus):
    """{0, 2, 3} as the kernel writes it: "0,2-3"."""
    parts, run = [], []
    for cpu in sorted(cpus):
        if run and cpu != run[-1] + 1:
            parts.append(_span(run))
            run = []
        run.append(cpu)
    if run:
        parts.append(_span(run))
    return ",".join(parts)


def _span(run):
    return str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"


def parse_cpu_list(text):
    """ "0,2-3" as {0, 2, 3}."""
    cpus = set()
    for part in text.strip().split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def allowed(pid):
    """{thread id: the CPUs it may run on} of every thread of `pid`, read from /proc."""
    out = {}
    for task in sorted(Path(f"/proc/{pid}/task").iterdir(), key=lambda path: int(path.name)):
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            for line in (task / "status").read_text().splitlines():
                if line.startswith("Cpus_allowed_list:"):
                    out[int(task.name)] = parse_cpu_list(line.split(":", 1)[1])
    return out


def pin(pid, cpus):
    """Every thread of process `pid` to `cpus` (threads it starts later inherit its main one's)."""
    for tid in allowed(pid):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(tid, cpus)
    return check(pid, cpus)


def check(pid, cpus, what="process"):
    """'<what> <pid>: Cpus_allowed_list <list> (<n> threads)', once /proc confirms every thread
    of `pid` may run on `cpus` and nothing else; ContenderFailed if not."""
    found = allowed(pid)
    wrong = {tid: mask for tid, mask in found.items() if mask != set(cpus)}
    if not found or wrong:
        raise ContenderFailed(
            f"{what} {pid} is not pinned to CPU {cpu_list(cpus)}: "
            + (", ".join(f"thread {t} on {cpu_list(m)}" for t, m in wrong.items()) or "gone")
        )
    threads = f" ({len(found)} threads)" if len(found) > 1 else ""
    return f"{what} {pid}: Cpus_allowed_list {cpu_list(cpus)}{threads}"


@contextlib.contextmanager
def this_process(cpus):
    """This process (and what it forks meanwhile) on `cpus` for the block, then as before."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def run(argv, cpus=None):
    """subprocess.run(argv, capture_output=True, text=True) with the child on `cpus` from its
    first instruction; (CompletedProcess, its check() line or None)."""
    if cpus is None:
        return subprocess.run(argv, capture_output=True, text=True, check=False), None
    with subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
    ) as process:
        # Popen returns once the child has exec'd: its affinity is set by now.
        try:
            checked = check(process.pid, cpus, argv[0])
        except ContenderFailed:
            process.kill()
            raise
        except FileNotFoundError:  # it ended already: it inherited preexec_fn's affinity
            checked = f"{argv[0]} {process.pid}: ended before it could be read"
        stdout, stderr = process.communicate()
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr), checked
