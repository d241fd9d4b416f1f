"""Child processes: wait until one is ready, stop one, and supervise several side by side."""

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from .exceptions import ServiceUnavailable


def wait_until(predicate, timeout, what):
    """Poll `predicate` until it is true; ServiceUnavailable naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise ServiceUnavailable(f"{what} did not come up within {timeout:.0f} s")


def stop_process(process, timeout=10):
    """SIGTERM, then SIGKILL after `timeout` s; returns the exit code (None if never started)."""
    if process is None:
        return None
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def supervise(commands):
    """Run commands side by side until one exits or Ctrl-C / SIGTERM; then stop them all."""
    stopping = []

    def request_stop(signum, _frame):
        stopping.append(signum)

    # Installed explicitly (a shell that starts us in the background ignores SIGINT by default),
    # and before the first child starts, so that no signal can orphan one.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    processes = [
        subprocess.Popen(command, shell=True, start_new_session=True) for command in commands
    ]
    while not stopping and all(process.poll() is None for process in processes):
        time.sleep(0.2)
    stop_groups(processes)
    failed = [p.returncode for p in processes if p.returncode not in (0, -signal.SIGTERM)]
    return 1 if failed and not stopping else 0


def stop_groups(processes, timeout=15):
    """SIGTERM the process group of each (a shell and all it started), SIGKILL what is left after
    `timeout` s; returns once every process of those groups is gone, not only their leaders."""
    for process in processes:
        _signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        while group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if group_alive(process.pid):
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
            killed = time.monotonic()
            while group_alive(process.pid) and time.monotonic() - killed < 5:
                time.sleep(0.05)


def group_alive(pgid):
    """Whether a process of group `pgid` is still running (zombies, dead already, do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: kill(0) answers, zombies included
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        state, _parent, group = fields[:3]
        if int(group) == pgid and state != "Z":
            return True
    return False


def _signal_group(pgid, signum):
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)
