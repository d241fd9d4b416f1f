"""`make run` as a new user runs it: the site answers, and Ctrl-C leaves no process of it running."""

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import devservices
from tests.processes import PROJECT_DIR, child_pids


def descendants(pid):
    """Every process below `pid`, children first (Linux /proc)."""
    found = []
    try:
        children = child_pids(pid)
    except FileNotFoundError:
        return found
    for child in children:
        found.append(child)
        found += descendants(child)
    return found


def command_line(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def is_alive(pid):
    """Running, not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def processes_naming(*words):
    """Pids of every process on the host whose command line holds one of `words`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and any(word in command_line(entry.name) for word in words):
            found.append(int(entry.name))
    return [pid for pid in found if pid != os.getpid() and is_alive(pid)]


def answers(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


HOST = "127.0.0.2"


@pytest.fixture
def make_run(tmp_path):
    """`make run` on a SQLite file, a Redis port nothing listens on and a free web port, served
    on HOST=127.0.0.2 (a loopback address other than the default, as a user's own host name)."""
    web_port, redis_port = devservices.free_port(), devservices.free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "settings.dev",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "RQ_REDIS_URL": f"redis://127.0.0.1:{redis_port}/1",
    }
    env.pop("QUEUE_BACKEND", None)
    # As a user's shell starts it, not as a sub-make of `make test REDIS_URL=…`: variables given
    # on that command line reach a child make through MAKEFLAGS and override the environment's
    # (make run then found that Redis running and started none of its own).
    for variable in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        env.pop(variable, None)
    log = (tmp_path / "make-run.log").open("w")
    process = subprocess.Popen(
        [
            "make",
            "run",
            f"HOST={HOST}",
            f"PORT={web_port}",
            f"STATE_DIR={tmp_path / 'state'}",
            "DEMO_USERS=2",
            "DEMO_POSTS=30",
        ],
        cwd=PROJECT_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    started = set()  # every process seen below make: the test adds to it
    yield process, web_port, redis_port, tmp_path / "make-run.log", started
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    log.close()
    # Only if the test failed: nothing of it may outlive it.
    leftovers = started | set(processes_naming(f"{HOST}:{web_port}", f"127.0.0.1:{redis_port}"))
    for pid in leftovers:
        if is_alive(pid) and pid != os.getpid():
            os.kill(pid, signal.SIGKILL)


def test_ctrl_c_on_make_run_stops_every_process_it_started(make_run):
    process, web_port, redis_port, log, started = make_run
    deadline = time.monotonic() + 240
    while True:
        assert process.poll() is None, f"make run exited early:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"the site never answered:\n{log.read_text()[-3000:]}"
        started.update(descendants(process.pid))
        lines = [command_line(pid) for pid in started]
        worker_up = any("runworker" in line for line in lines)
        # At its HOST, not only on 127.0.0.1: Django answered 400 to every other name.
        if worker_up and answers(f"http://{HOST}:{web_port}/"):
            break
        time.sleep(0.5)
    started.update(descendants(process.pid))
    redis = [
        pid
        for pid in processes_naming(f"127.0.0.1:{redis_port}")
        if command_line(pid).startswith("redis-server")
    ]
    assert len(redis) == 1, "make run started no Redis of its own"
    assert devservices.redis_ping("127.0.0.1", redis_port)
    started.update(redis)

    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    process.wait(timeout=120)

    left = {pid: command_line(pid) for pid in started if is_alive(pid)}
    assert left == {}, f"still running after Ctrl-C: {left}\n{log.read_text()[-2000:]}"
    assert processes_naming(f"{HOST}:{web_port}", f"127.0.0.1:{redis_port}") == []
    assert not devservices.is_listening(HOST, web_port)
    assert not devservices.is_listening("127.0.0.1", redis_port)
