"""Helpers for tests that run manage.py in a subprocess (workers, commands)."""

import importlib.util
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent


def manage_env(env=None):
    """os.environ with test settings and `env` on top; a None value removes the variable."""
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "settings.test", **(env or {})}
    return {key: value for key, value in full_env.items() if value is not None}


def run_manage(*args, env=None, timeout=120):
    """Run manage.py in a subprocess with the given environment overrides; returns the result."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env=manage_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_python(code, env=None, timeout=120):
    """Run `code` in a fresh interpreter in the project directory, with the environment of
    manage_env(env); returns the result."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_DIR,
        env=manage_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# A sitecustomize hiding psycopg 3 (and its pool) as if not installed: Django then takes psycopg2.
HIDE_PSYCOPG3 = 'import sys\nsys.modules["psycopg"] = sys.modules["psycopg_pool"] = None\n'


def on_psycopg2(directory):
    """The environment variables of a child process (manage.py, a script) whose Django runs on
    psycopg2, as a project without psycopg 3 does: a sitecustomize in `directory` (on PYTHONPATH)
    hides psycopg 3."""
    assert importlib.util.find_spec("psycopg2") is not None, (
        "psycopg2 is not installed: it is in requirements-dev.txt (a test-only dependency),"
        " run `make venv`"
    )
    (directory / "sitecustomize.py").write_text(HIDE_PSYCOPG3)
    return {"PYTHONPATH": str(directory)}


def start_manage(*args, env=None):
    """Start manage.py in the background (stderr piped, as text); the caller stops it."""
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env=manage_env(env),
        stderr=subprocess.PIPE,
        text=True,
    )


def child_pids(pid):
    """The process ids of `pid`'s children (Linux /proc)."""
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        return [int(child) for child in children.read().split()]


def run_workers_then(env, concurrency, act):
    """Start `runworker --concurrency N`, call act(parent pid, child pids) once all N are forked,
    and return (exit code, stderr) after it exits."""
    process = start_manage("runworker", "--concurrency", str(concurrency), env=env)
    try:
        deadline = time.monotonic() + 30
        while len(child_pids(process.pid)) < concurrency:
            assert time.monotonic() < deadline and process.poll() is None, "no workers forked"
            time.sleep(0.05)
        act(process.pid, child_pids(process.pid))
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, stderr


def _stderr_lines(process):
    """A queue of `process`'s stderr lines (piped, as text), then None at its end; read by a thread
    of its own, started at the first call. Not select() on the pipe and readline(): the text layer
    may hold lines read ahead (a loaded machine lets them pile up), which select() does not see."""
    lines = getattr(process, "_stderr_lines", None)
    if lines is None:
        lines = process._stderr_lines = queue.Queue()

        def read():
            for line in process.stderr:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, name="stderr-lines", daemon=True).start()
    return lines


def wait_for_line(process, text, timeout=30):
    """Read `process`'s stderr (piped, as text) until a line holds `text`; returns the lines read.
    Fails once `timeout` seconds passed, or the process ended, without such a line. The lines
    after it: rest_of_stderr(process), not communicate()."""
    lines, source = [], _stderr_lines(process)
    deadline = time.monotonic() + timeout
    while not lines or text not in lines[-1]:
        try:
            line = source.get(timeout=max(0.001, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no line with {text!r} within {timeout} s: {lines}") from None
        assert line is not None, f"the process ended without a line with {text!r}: {lines}"
        lines.append(line)
    return lines


def rest_of_stderr(process, timeout=30):
    """Wait for `process` to exit (subprocess.TimeoutExpired after `timeout` s) and return what
    it wrote to stderr after the lines wait_for_line() returned."""
    process.wait(timeout=timeout)
    rest, source = [], _stderr_lines(process)
    deadline = time.monotonic() + timeout
    while (line := source.get(timeout=max(0.001, deadline - time.monotonic()))) is not None:
        rest.append(line)
    return "".join(rest)


# libfaketime (Debian's libfaketime, which `make test` installs): a child process whose clock
# runs ahead or behind, as on a host whose clock drifted; Redis and PostgreSQL keep the real one.
FAKETIME_LIBRARIES = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
)


def skewed_clock(offset):
    """The environment variables of a child process whose clock is `offset` ("+90s", "-1d") off
    the real one; pytest.skip when libfaketime is not installed."""
    import pytest

    library = next((path for path in FAKETIME_LIBRARIES if os.path.exists(path)), None)
    if library is None:
        pytest.skip("libfaketime is not installed: apt-get install faketime (make test does)")
    # FAKETIME_DONT_FAKE_MONOTONIC: a drifted host's monotonic clock still measures durations
    # right; only its wall clock is off.
    return {"LD_PRELOAD": library, "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
