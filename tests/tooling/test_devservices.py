"""python -m devservices: `ensure` against real and impostor servers, `supervise` stopping its children."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

import pytest
import redis
from django.conf import settings

import devservices
from tests.processes import PROJECT_DIR


def devservices_command(*args, **popen):
    return subprocess.Popen(
        [sys.executable, "-m", "devservices", *args],
        cwd=PROJECT_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def is_running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ensure_says_a_running_redis_is_up():
    process = devservices_command(
        "ensure", "--database-url", "", "--redis-url", settings.IMPRESSIONS_REDIS_URL
    )
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Redis is up at 127.0.0.1:" in out


@pytest.mark.tls
def test_ensure_and_supervise_take_a_tls_redis_by_its_rediss_url(redis_tls_url):
    """make test and make run check REDIS_URL first: a local rediss:// one is pinged over TLS with
    the URL's CA, not refused as 'not Redis' (nor given a plain redis-server on its port)."""
    port = urllib.parse.urlsplit(redis_tls_url).port
    ensure = devservices_command("ensure", "--database-url", "", "--redis-url", redis_tls_url)
    out, err = ensure.communicate(timeout=30)
    assert ensure.returncode == 0, err
    assert f"Redis is up at localhost:{port}" in out
    supervise = devservices_command("supervise", "--redis-url", redis_tls_url, "true")
    out, err = supervise.communicate(timeout=30)
    assert supervise.returncode == 0, err
    assert "Started redis-server" not in out


def test_ensure_refuses_a_port_that_is_not_redis():
    with socket.socket() as impostor:
        impostor.bind(("127.0.0.1", devservices.free_port()))
        impostor.listen()
        port = impostor.getsockname()[1]
        process = devservices_command("ensure", "--redis-url", f"redis://127.0.0.1:{port}/0")
        _, err = process.communicate(timeout=30)
    assert process.returncode == 1
    assert f"Something listens on 127.0.0.1:{port} but it is not Redis." in err


def test_supervise_stops_the_others_when_one_fails(tmp_path):
    pid_file = tmp_path / "sleeper.pid"
    process = devservices_command(
        "supervise", f"echo $$ > {pid_file}; exec sleep 60", "sleep 0.5; exit 3"
    )
    process.communicate(timeout=30)
    assert process.returncode == 1
    assert not is_running(int(pid_file.read_text()))


def test_supervise_stops_everything_on_sigterm_and_exits_0(tmp_path):
    pid_file = tmp_path / "sleeper.pid"
    process = devservices_command("supervise", f"echo $$ > {pid_file}; exec sleep 60", "sleep 60")
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "the supervised command never started"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=30)
    assert process.returncode == 0
    assert not is_running(int(pid_file.read_text()))


def test_supervise_starts_a_missing_redis_in_a_relative_state_dir(tmp_path):
    """make run passes `--state-dir .local`: redis-server changes to its `--dir` before it opens
    its `--logfile`, so a relative pair named a log file that did not exist and it never came up
    (make run failed where no Redis was running)."""
    port = devservices.free_port()
    completed = subprocess.run(
        [
            sys.executable, "-m", "devservices", "supervise", "--state-dir", "state",
            "--redis-url", f"redis://127.0.0.1:{port}/0", f"redis-cli -p {port} ping",
        ],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(PROJECT_DIR)}, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "Started redis-server" in completed.stdout
    assert "PONG" in completed.stdout
    assert (tmp_path / "state" / "redis" / f"redis-{port}.log").exists()
    assert (tmp_path / "state" / "redis" / f"dump-{port}.rdb").exists()  # saved when stopped


@pytest.mark.tls
def test_a_redis_server_that_never_answers_is_stopped_not_left_running(tmp_path, monkeypatch):
    """start_redis_server gives up after its wait: the redis-server it started (its own session,
    out of reach of Ctrl-C) must not outlive the failure, holding the port."""
    from devservices import redis_server
    from devservices.tls import TlsFiles, make_tls_files

    served, trusted = make_tls_files(tmp_path / "a"), make_tls_files(tmp_path / "b")
    # The server presents a's certificate; the readiness ping trusts b's CA only: never ready.
    mismatched = TlsFiles(ca=trusted.ca, certificate=served.certificate, key=served.key)
    wait = redis_server.wait_until
    monkeypatch.setattr(
        redis_server, "wait_until", lambda check, _timeout, what: wait(check, 2, what)
    )
    port = devservices.free_port()
    with pytest.raises(devservices.ServiceUnavailable):
        devservices.start_redis_server(port, tmp_path / "redis", tls=mismatched)
    assert not devservices.is_listening("127.0.0.1", port)


def test_a_port_another_redis_server_took_first_is_refused_not_taken_for_ours(tmp_path):
    """Two processes may pick the same free port at once; the redis-server of the later one
    fails to bind, and the earlier one's answers PING there in its place: seen as not ours."""
    port = devservices.free_port()
    first = devservices.start_redis_server(port, tmp_path / "first")
    try:
        with pytest.raises(devservices.ServiceUnavailable, match=f"port {port} is taken by"):
            devservices.start_redis_server(port, tmp_path / "second")
        assert first.poll() is None  # the other one serves on
        assert redis.Redis(port=port).ping()
    finally:
        devservices.stop_process(first)


@pytest.mark.parametrize(
    "make",
    [devservices.RedisTlsServerProcess, lambda: devservices.RedisClusterProcess(tls=True)],
    ids=["standalone", "cluster"],
)
def test_a_tls_redis_that_cannot_make_its_certificates_leaves_no_directory(
    make, tmp_path, monkeypatch
):
    from devservices import tls

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(tls.shutil, "which", lambda name: None)  # no openssl
    with pytest.raises(devservices.ServiceUnavailable, match="openssl"):
        make()
    assert list(tmp_path.iterdir()) == []
