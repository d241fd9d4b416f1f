"""A worker whose task runs well past JOB_TIMEOUT fails its /healthz, also across --concurrency."""

import json
import logging
import os
import time
import urllib.error
import urllib.request

import botocore.session
import pytest

from queues import health, liveness

# A loopback port nothing listens on (1: tcpmux, never served here).
DEAD_REDIS = "redis://127.0.0.1:1/0"


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        body = error.read()
        return error.code, json.loads(body) if body.startswith(b"{") else body


def wait_for(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_clock_is_idle_until_a_task_runs():
    clock = liveness.TaskClock()
    assert clock.longest_running() == 0.0
    with clock.running():
        time.sleep(0.05)
        assert clock.longest_running() >= 0.05
    assert clock.longest_running() == 0.0


# pytest's process has threads of earlier tests; the child only reads a pipe and _exits.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_workers_report_to_the_parent(monkeypatch):
    monkeypatch.setattr(liveness, "CLOCK", liveness.CLOCK)  # restored after the test
    clock = liveness.share_between(2)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # a worker child: runs a "task" until the parent closes the pipe
        code = 1
        try:
            os.close(write_end)
            clock.use_slot(1)
            with clock.running():
                os.read(read_end, 1)
            code = 0
        finally:
            os._exit(code)
    os.close(read_end)
    try:
        wait_for(lambda: liveness.CLOCK.longest_running() > 0.1)
    finally:
        os.close(write_end)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert liveness.CLOCK.longest_running() == 0.0
    with pytest.raises(ValueError, match="slot 2"):
        clock.use_slot(2)


def test_healthz_fails_once_a_task_overruns_job_timeout(monkeypatch, capfd):
    monkeypatch.setattr(liveness, "CLOCK", liveness.TaskClock())
    monkeypatch.setattr(liveness, "STALL_GRACE", 0.5)
    server = health.serve_in_background(health.bind_health_server(0, job_timeout=0.5))  # 1 s
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        assert get(f"{base}/healthz") == (200, {"status": "ok"})
        with liveness.CLOCK.running():
            assert get(f"{base}/healthz")[0] == 200  # running, within its time: alive
            time.sleep(1.2)
            status, body = get(f"{base}/healthz")
            assert status == 503
            assert body == {"status": "stalled"}  # the why goes to the log, not to the caller
            assert "restart it" in capfd.readouterr().err  # the log (the app set up its handler)
        assert get(f"{base}/healthz") == (200, {"status": "ok"})
    finally:
        server.shutdown()
        server.server_close()


def test_without_a_job_timeout_healthz_never_reports_a_stall(monkeypatch):
    monkeypatch.setattr(liveness, "CLOCK", liveness.TaskClock())
    with liveness.CLOCK.running():
        time.sleep(0.05)
        assert health.stalled(None) is None
        assert health.stalled(0.01)["status"] == "stalled"


@pytest.mark.django_db
def test_a_project_without_probe_routes_gets_the_worker_s_own(settings, rq_url, capfd):
    settings.ROOT_URLCONF = "tests.queues.probe_urls"
    settings.MIDDLEWARE = [name for name in settings.MIDDLEWARE if "Probe" not in name]
    server = health.serve_in_background(health.bind_health_server(0))
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        assert get(f"{base}/healthz") == (200, {"status": "ok"})
        ready = {"database": {"ok": True}, "migrations": {"ok": True}, "queue": {"ok": True}}
        assert get(f"{base}/readyz") == (200, {"status": "ok", "checks": ready})
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
            assert b"python_info" in response.read()
        settings.RQ_QUEUES = {"default": {**settings.RQ_QUEUES["default"], "URL": DEAD_REDIS}}
        ready["queue"] = {"ok": False}
        assert get(f"{base}/readyz") == (503, {"status": "unavailable", "checks": ready})
        assert get(f"{base}/admin/")[0] == 404  # still the probes only
        # No warning a probe, every few seconds (get_wsgi_application() sets up the logging
        # again, so the lines go to the console handler's stderr, not to caplog).
        assert "Not Found: /healthz" not in capfd.readouterr().err
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.django_db
def test_the_first_readyz_does_not_wait_for_the_sqs_client_to_be_built(sqs, settings):
    # A cold boto3 client takes 0.3 to 1 s to build; built by the first /readyz, it made that
    # probe miss READINESS_TIMEOUT (503). Slower still here: botocore's own event on its session.
    session = botocore.session.get_session()
    session.register("creating-client-class.sqs", lambda **kwargs: time.sleep(1))
    options = {
        **settings.TASKS["default"]["OPTIONS"],
        "SESSION_PARAMS": {"botocore_session": session},
    }
    settings.TASKS = {"default": {**settings.TASKS["default"], "OPTIONS": options}}
    settings.READINESS_TIMEOUT = 0.5
    server = health.serve_in_background(health.bind_health_server(0))  # the probe server starts
    try:
        status, body = get(f"http://127.0.0.1:{server.server_port}/readyz")
    finally:
        server.shutdown()
        server.server_close()
    assert status == 200, body
    assert body["checks"]["queue"]["detail"] == "SQSBackend"


@pytest.mark.django_db
def test_a_site_without_a_default_task_backend_still_starts_its_probes(settings):
    # Building the client ahead is a courtesy to the first /readyz: TASKS without a "default"
    # alias (tasks all name theirs) passes the checks, and made wsgi.py's import and runworker
    # --health-port fail with InvalidTaskBackend; /readyz is the one to report it.
    settings.TASKS = {"jobs": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
    health.warm_up_queue()
    server = health.serve_in_background(health.bind_health_server(0))
    try:
        status, body = get(f"http://127.0.0.1:{server.server_port}/readyz")
    finally:
        server.shutdown()
        server.server_close()
    assert status == 503 and "InvalidTaskBackend" in json.dumps(body), body


def test_a_project_without_logging_still_sees_one_line_per_task(monkeypatch, capfd):
    from queues.management.commands.runworker import show_task_lines

    worker_log = logging.getLogger("queues.worker")
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # Django's default: none at the root
    monkeypatch.setattr(worker_log, "handlers", [])
    monkeypatch.setattr(worker_log, "level", logging.NOTSET)
    monkeypatch.setattr(worker_log, "propagate", False)  # pytest's capture handler stays out
    show_task_lines()
    worker_log.info("task=t id=1 outcome=succeeded duration=0.001s")
    assert "INFO queues.worker task=t id=1 outcome=succeeded" in capfd.readouterr().err
