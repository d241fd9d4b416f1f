"""Helpers for tests that run manage.py in a subprocess (workers, commands)."""

import os
import select
import subprocess
import sys
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


def wait_for_line(process, text, timeout=30):
    """Read `process`'s stderr (piped, as text) until a line holds `text`; returns the lines read.
    Fails once `timeout` seconds passed, or the process ended, without such a line."""
    lines = []
    deadline = time.monotonic() + timeout
    while not lines or text not in lines[-1]:
        left = deadline - time.monotonic()
        readable, _, _ = select.select([process.stderr], [], [], max(0, left))
        assert readable and left > 0, f"no line with {text!r} within {timeout} s: {lines}"
        line = process.stderr.readline()
        assert line, f"the process ended without a line with {text!r}: {lines}"
        lines.append(line)
    return lines
