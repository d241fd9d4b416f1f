"""Child processes: wait until one is ready, stop one, and supervise several side by side."""

import os
import signal
import subprocess
import time

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
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    failed = [p.returncode for p in processes if p.returncode not in (0, -signal.SIGTERM)]
    return 1 if failed and not stopping else 0
