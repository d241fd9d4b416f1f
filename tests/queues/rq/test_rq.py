"""The RQ backend against the real standalone Redis: enqueue, run, defer, results, refusals."""

import contextlib
import datetime
import logging
import os
import signal
import socket
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.tasks import TaskResultStatus, task_backends
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils import timezone

import devservices
from queues.exceptions import QueueConfigurationError
from tests.processes import PROJECT_DIR, run_workers_then, start_manage
from tests.queues import tasks as queue_tasks

RQ_BACKEND = "queues.backends.rq.RQBackend"
# The in-process worker calls close_old_connections() between jobs, as in production: without
# database access that fails whenever an earlier test left a connection open.
pytestmark = pytest.mark.django_db


@pytest.fixture
def rq_url(settings):
    """The RQ Redis of this test run (RQ_REDIS_URL), emptied before and after each test."""
    url = settings.RQ_REDIS_URL
    connection = redis.Redis.from_url(url)
    try:
        connection.flushdb()
    except redis.ConnectionError as error:
        pytest.fail(f"Redis at {url} is not reachable ({error}); start it with `make services`.")
    queue_tasks.markers_client().delete(queue_tasks.MARKERS)
    settings.TASKS = {"default": {"BACKEND": RQ_BACKEND, "OPTIONS": {"URL": url}}}
    yield url
    connection.flushdb()
    queue_tasks.markers_client().delete(queue_tasks.MARKERS)


def run_burst(**kwargs):
    backend = task_backends["default"]
    return backend.make_worker(burst=True, **kwargs).run()


def worker_env(url, **extra):
    return {"QUEUE_BACKEND": "rq", "RQ_REDIS_URL": url, **extra}


def test_enqueued_task_runs_in_worker_with_signals_and_result(rq_url):
    seen = []

    def remember(signal_name):
        def receiver(sender, task_result, **kwargs):
            seen.append((signal_name, task_result.id, task_result.status))

        return receiver

    receivers = {
        task_enqueued: remember("enqueued"),
        task_started: remember("started"),
        task_finished: remember("finished"),
    }
    for signal_, receiver in receivers.items():
        signal_.connect(receiver)
    try:
        result = queue_tasks.record_marker.enqueue("one")
        assert run_burst() == 0
    finally:
        for signal_, receiver in receivers.items():
            signal_.disconnect(receiver)

    assert queue_tasks.markers() == ["one"]
    assert [name for name, *_ in seen] == ["enqueued", "started", "finished"]
    assert {result_id for _, result_id, _ in seen} == {result.id}
    assert seen[-1][2] == TaskResultStatus.SUCCESSFUL
    fetched = queue_tasks.record_marker.get_result(result.id)
    assert fetched.status == TaskResultStatus.SUCCESSFUL
    assert fetched.return_value == "one"
    assert fetched.args == ["one"]


def test_failed_task_result_names_the_exception(rq_url):
    result = queue_tasks.fail_always.enqueue("x")
    run_burst()
    fetched = task_backends["default"].get_result(result.id)
    assert fetched.status == TaskResultStatus.FAILED
    assert fetched.errors[0].exception_class is RuntimeError
    assert "fails on purpose" in fetched.errors[0].traceback


def test_run_after_is_honoured_by_the_scheduler(rq_url):
    due = timezone.now() + datetime.timedelta(seconds=2)
    result = queue_tasks.record_marker.using(run_after=due).enqueue("later")
    run_burst()
    assert queue_tasks.markers() == []
    assert task_backends["default"].get_result(result.id).status == TaskResultStatus.READY
    time.sleep(max(0, (due - timezone.now()).total_seconds()) + 0.2)
    run_burst()
    assert queue_tasks.markers() == ["later"]


def test_unknown_option_and_missing_url_name_the_alias(settings):
    settings.TASKS = {"other": {"BACKEND": RQ_BACKEND, "OPTIONS": {"URL": "redis://x", "URLS": 1}}}
    with pytest.raises(QueueConfigurationError, match=r"TASKS\['other'\].*URLS"):
        task_backends["other"]
    settings.TASKS = {"other": {"BACKEND": RQ_BACKEND}}
    with pytest.raises(QueueConfigurationError, match=r"TASKS\['other'\].*URL"):
        task_backends["other"]


def test_unknown_option_fails_every_command_at_start_up(manage, tmp_path):
    settings_file = tmp_path / "typo_settings.py"
    settings_file.write_text(
        "from settings.test import *\n"
        f"TASKS = {{'default': {{'BACKEND': {RQ_BACKEND!r}, "
        "'OPTIONS': {'URL': 'redis://127.0.0.1:6379/14', 'JOB_TIMEOUTS': 5}}}\n"
    )
    result = manage(
        "check",
        env={"DJANGO_SETTINGS_MODULE": "typo_settings", "PYTHONPATH": f"{tmp_path}:{PROJECT_DIR}"},
    )
    assert result.returncode != 0
    assert "TASKS['default']" in result.stderr
    assert "JOB_TIMEOUTS" in result.stderr


def test_runworker_burst_runs_tasks_and_logs_one_line_each(rq_url, manage):
    for name in ("a", "b", "c"):
        queue_tasks.record_marker.enqueue(name)
    queue_tasks.fail_always.enqueue("d")
    result = manage("runworker", "--burst", env=worker_env(rq_url))
    assert result.returncode == 0, result.stderr
    assert sorted(queue_tasks.markers()) == ["a", "b", "c", "failed:d"]
    lines = [line for line in result.stderr.splitlines() if "outcome=" in line]
    assert len(lines) == 4
    assert sum("task=tests.queues.tasks.record_marker" in line for line in lines) == 3
    assert sum("outcome=succeeded" in line for line in lines) == 3
    assert sum("outcome=failed" in line for line in lines) == 1
    assert all("duration=" in line for line in lines)


def test_runworker_max_jobs_stops_after_n(rq_url, manage):
    for name in ("a", "b", "c"):
        queue_tasks.record_marker.enqueue(name)
    result = manage("runworker", "--max-jobs", "2", env=worker_env(rq_url))
    assert result.returncode == 0, result.stderr
    assert queue_tasks.markers() == ["a", "b"]


@pytest.mark.django_db(transaction=True)
def test_a_timed_out_job_query_is_cancelled_on_the_server(rq_url, settings, caplog):
    settings.TASKS["default"]["OPTIONS"]["JOB_TIMEOUT"] = 1
    tag = uuid.uuid4().hex
    queue_tasks.hold_database.enqueue(30, tag)
    queue_tasks.record_marker.enqueue("after")
    with caplog.at_level(logging.INFO, logger="queues.worker"):
        run_burst()  # in this (main) thread, where RQ's SIGALRM death penalty works
    assert queue_tasks.markers() == ["querying", "after"]
    outcomes = [r.getMessage() for r in caplog.records if "outcome=" in r.getMessage()]
    timed_out = [line for line in outcomes if "outcome=timed-out" in line]
    assert len(timed_out) == 1 and "reason=JOB_TIMEOUT (1 s)" in timed_out[0], outcomes
    assert sum("outcome=succeeded" in line for line in outcomes) == 1
    assert queue_tasks.no_query_held(tag)  # without the cancel: 30 s


def test_a_stop_while_workers_start_is_a_clean_stop():
    # A Redis that accepts connections and never answers: the workers hang in their start-up probe.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", devservices.free_port()))
        silent.listen(16)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        code, stderr = run_workers_then(
            worker_env(url), 3, lambda parent, children: os.kill(parent, signal.SIGTERM)
        )
    assert code == 0, stderr
    assert "exit codes [0, 0, 0]" in stderr
    assert "stopping the other workers" not in stderr


def test_runworker_without_a_queue_backend_says_so(manage):
    result = manage("runworker", "--burst", env={"QUEUE_BACKEND": "immediate"})
    assert result.returncode != 0
    assert "ImmediateBackend" in result.stderr and "QUEUE_BACKEND" in result.stderr


def test_runworker_rejects_bad_numbers(manage):
    result = manage("runworker", "--max-jobs", "0", env={"QUEUE_BACKEND": "rq"})
    assert result.returncode != 0
    assert "--max-jobs" in result.stderr


def test_planted_jobs_naming_other_callables_are_not_executed(rq_url, manage, tmp_path):
    """Jobs written straight into Redis with rq's own API, naming os.system and a plain function."""
    from rq import Queue
    from rq.serializers import JSONSerializer

    connection = redis.Redis.from_url(rq_url)
    proof = tmp_path / "os-system-ran"
    json_queue = Queue("default", connection=connection, serializer=JSONSerializer)
    planted = [
        json_queue.enqueue_call("os.system", args=(f"touch {proof}",)),
        json_queue.enqueue_call("tests.queues.tasks.not_a_task", args=("direct",)),
        # Our trampoline, but naming a function that is not a django.tasks Task.
        json_queue.enqueue_call(
            "queues.backends.rq.run_task", args=("tests.queues.tasks.not_a_task", ["via"], {})
        ),
        # A pickled job: the worker reads JSON only, so it never unpickles it.
        Queue("default", connection=connection).enqueue_call("os.system", args=(f"touch {proof}",)),
    ]
    queue_tasks.record_marker.enqueue("good")

    result = manage("runworker", "--burst", env=worker_env(rq_url))

    assert result.returncode == 0, result.stderr
    assert not Path(proof).exists()
    assert queue_tasks.markers() == ["good"]
    failed = set(json_queue.failed_job_registry.get_job_ids())
    assert {job.id for job in planted} <= failed
    refused = [line for line in result.stderr.splitlines() if "outcome=refused" in line]
    assert len(refused) == 3  # the fourth names our trampoline and fails inside it


def test_sigterm_mid_task_finishes_it_and_exits_zero(rq_url):
    queue_tasks.sleep_then_mark.enqueue(2, "slow")
    queue_tasks.record_marker.enqueue("next")
    process = start_manage("runworker", env=worker_env(rq_url))
    deadline = time.monotonic() + 20
    connection = redis.Redis.from_url(rq_url)
    while not connection.keys("rq:wip:*") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert queue_tasks.markers() == ["slow"]


def test_sigterm_to_an_idle_worker_stops_it_at_once(rq_url):
    process = start_manage("runworker", env=worker_env(rq_url))
    connection = redis.Redis.from_url(rq_url)
    deadline = time.monotonic() + 20
    while not connection.keys("rq:workers:*") and time.monotonic() < deadline:
        time.sleep(0.05)  # registered: RQ's own signal handlers are in place
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert time.monotonic() - started < 10  # not the 405 s of an idle dequeue


def test_an_idle_stop_swallowed_by_the_interpreter_still_ends_the_loop(rq_url):
    from rq.exceptions import StopRequested

    from queues.backends.rq import task_job_class
    from queues.workers.rq import task_worker_class

    worker = task_worker_class()(
        ["default"], connection=redis.Redis.from_url(rq_url), job_class=task_job_class()
    )
    # What RQ's SIGTERM handler does when no job runs; the exception is dropped, as when the
    # signal lands in a __del__ or an import's module-lock callback.
    with contextlib.suppress(StopRequested):
        worker._shutdown()
    assert worker._stop_requested  # the work loop breaks at its next turn


def test_runworker_concurrency_runs_several_worker_processes(rq_url, manage):
    for name in ("a", "b", "c", "d"):
        queue_tasks.slow_marker.enqueue(name, 0.5)
    result = manage("runworker", "--burst", "--concurrency", "2", env=worker_env(rq_url))
    assert result.returncode == 0, result.stderr
    assert sorted(m for m in queue_tasks.markers() if ":" not in m) == ["a", "b", "c", "d"]
    assert "All 2 workers stopped" in result.stderr


def test_unknown_queue_backend_names_the_variable(manage):
    result = manage("check", env={"QUEUE_BACKEND": "celery"})
    assert result.returncode != 0
    assert "QUEUE_BACKEND" in result.stderr and "rq" in result.stderr


def test_runworker_reports_an_unreachable_redis_without_a_traceback(manage):
    result = manage("runworker", "--burst", env=worker_env("redis://127.0.0.1:9/0"))
    assert result.returncode != 0
    assert "unreachable" in result.stderr
    assert "Traceback" not in result.stderr
