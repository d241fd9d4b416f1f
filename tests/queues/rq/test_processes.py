"""`runworker` on RQ in subprocesses: log lines, --max-jobs, --concurrency, signals, refusals."""

import contextlib
import datetime
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured
from django.tasks import task_backends
from django.utils import timezone
from rq import Queue
from rq.serializers import JSONSerializer

import devservices
from queues.rq import jobs
from tests.failover import Forwarder
from tests.processes import PROJECT_DIR, run_workers_then, start_manage
from tests.queues import tasks as queue_tasks
from tests.queues.rq.support import (
    RQ_BACKEND,
    rq_settings,
    stopped_by_a_second_sigterm,
    within,
    worker_env,
)
from tests.settings_modules import load_settings


def test_unknown_option_fails_every_command_at_start_up(manage, tmp_path, settings):
    settings_file = tmp_path / "typo_settings.py"
    settings_file.write_text(
        "from settings.test import *\n"
        f"TASKS = {{'default': {{'BACKEND': {RQ_BACKEND!r}, "
        f"'OPTIONS': {{'URL': {settings.RQ_REDIS_URL!r}, 'JOB_TIMEOUTS': 5}}}}}}\n"
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


def test_a_stop_while_workers_start_is_a_clean_stop():
    # A Redis that accepts connections and never answers: the workers hang in their start-up probe.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
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
    assert "ImmediateBackend" in result.stderr and "queues.rq.backend.RQBackend" in result.stderr


def test_runworker_rejects_bad_numbers(manage):
    result = manage("runworker", "--max-jobs", "0", env={"QUEUE_BACKEND": "rq"})
    assert result.returncode != 0
    assert "--max-jobs" in result.stderr
    result = manage("runworker", "--health-port", "70000", env={"QUEUE_BACKEND": "rq"})
    assert result.returncode != 0
    assert "70000 is no TCP port" in result.stderr and "Traceback" not in result.stderr


def test_planted_jobs_naming_other_callables_are_not_executed(rq_url, manage, tmp_path):
    """Jobs written straight into Redis with rq's own API, naming os.system and a plain function."""
    connection = redis.Redis.from_url(rq_url)
    proof = tmp_path / "os-system-ran"
    json_queue = Queue("default", connection=connection, serializer=JSONSerializer)
    planted = [
        json_queue.enqueue_call("os.system", args=(f"touch {proof}",)),
        json_queue.enqueue_call("tests.queues.tasks.not_a_task", args=("direct",)),
        # Our trampoline, but naming a function that is not a django.tasks Task.
        json_queue.enqueue_call(
            jobs.TRAMPOLINE, args=("tests.queues.tasks.not_a_task", ["via"], {})
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
    assert len(refused) == 4  # the fourth names our trampoline, with a function that is no Task


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


def test_a_second_sigterm_mid_task_stops_at_once_exits_1_and_the_job_is_retried(rq_url):
    # RQ's cold shutdown raised SystemExit() (code 0) into the task; RQ's own except took it as
    # the job's failure, and the loop then ended as on a clean stop: `runworker` exited 0.
    queue_tasks.slow_marker.enqueue("long", 20)
    process = start_manage("runworker", env=worker_env(rq_url))
    stderr = stopped_by_a_second_sigterm(process, "start:long")
    assert queue_tasks.markers() == ["start:long"]  # cut short
    # RQ's rules: a failed attempt, retried after the delay.
    assert "outcome=failed" in stderr and "next_attempt_in=10s" in stderr, stderr


def test_sigterm_to_an_idle_worker_stops_it_at_once(rq_url):
    # First a worker killed outright (SIGKILL, the OOM killer) on the same health port: its
    # scheduler process (forked after the port was bound) outlived it, holding the listening
    # socket, so the restarted worker failed with "cannot listen there (Address already in use)".
    connection = redis.Redis.from_url(rq_url)
    port = str(devservices.free_port())
    killed = start_manage("runworker", "--health-port", port, env=worker_env(rq_url))
    within(20, lambda: waiting_with_a_scheduler(connection) or killed.poll() is not None)
    scheduler = [int(connection.hget(key, "pid")) for key in connection.keys("rq:scheduler:*")]
    killed.kill()
    killed.wait(timeout=10)
    within(5, lambda: not any(running(pid) for pid in scheduler))
    left = [pid for pid in scheduler if running(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)  # not left behind by a failing run
    assert scheduler and not left, f"the scheduler {left} outlived its killed worker"
    process = start_manage("runworker", "--health-port", port, env=worker_env(rq_url))
    # Waiting with a scheduler: RQ's own signal handlers are in place.
    within(20, lambda: waiting_with_a_scheduler(connection) or process.poll() is not None)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert time.monotonic() - started < 10  # not the 405 s of an idle dequeue


def test_runworker_concurrency_runs_several_worker_processes(rq_url, manage):
    for name in ("a", "b", "c", "d"):
        queue_tasks.slow_marker.enqueue(name, 0.5)
    result = manage("runworker", "--burst", "--concurrency", "2", env=worker_env(rq_url))
    assert result.returncode == 0, result.stderr
    assert sorted(m for m in queue_tasks.markers() if ":" not in m) == ["a", "b", "c", "d"]
    assert "All 2 workers stopped" in result.stderr


def test_unknown_queue_backend_names_the_variable():
    # The settings' refusal: manage.py prints it as one line (tests/site/test_prod_settings.py).
    with pytest.raises(ImproperlyConfigured) as refused:
        load_settings("settings.test", {"QUEUE_BACKEND": "celery"})
    assert "QUEUE_BACKEND" in str(refused.value) and "rq" in str(refused.value)


def test_runworker_reports_an_unreachable_redis_without_a_traceback(manage):
    result = manage("runworker", "--burst", env=worker_env("redis://127.0.0.1:9/0"))
    assert result.returncode != 0
    assert "unreachable" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_worker_and_its_scheduler_outlive_a_redis_restart(settings, tmp_path):
    # RQ's worker waits out a Redis outage only in its wait for jobs: met anywhere else (here the
    # heartbeat after a job), it quit. RQ's scheduler process ended at its first Redis error, and
    # the worker started another only at its next maintenance, 10 minutes on: a flush due after
    # a blip waited that long.
    port = devservices.free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = devservices.start_redis_server(port, tmp_path)
    try:
        with rq_worker_on(url, settings) as (worker, lines):
            connection = redis.Redis.from_url(url)
            # The outage starts once both loops run: the worker holds the scheduler's lock before
            # the scheduler's own process has started.
            within(30, lambda: waiting_with_a_scheduler(connection))
            queue_tasks.held_marker.enqueue("during the outage", 30)
            within(30, lambda: "start:during the outage" in queue_tasks.markers())
            server.terminate()
            server.wait(timeout=10)
            within(30, lambda: any("RQ scheduler: Redis failed" in line for line in lines))
            queue_tasks.release("during the outage")  # the task ends; the worker meets the outage
            within(30, lambda: worker_failed(lines) or worker.poll() is not None)
            server = devservices.start_redis_server(port, tmp_path)
            due = timezone.now() + datetime.timedelta(seconds=1)
            queue_tasks.record_marker.using(run_after=due).enqueue("after the restart")
            within(
                40,
                lambda: "after the restart" in queue_tasks.markers() or worker.poll() is not None,
            )
            markers = queue_tasks.markers()
            # The server came back empty (no persistence): RQ's heartbeats only extended the
            # worker's key, which a heartbeat's HSET had made anew, so the worker was listed
            # nowhere for the rest of its life (the dashboard, rq_workers: 0).
            within(15, lambda: waiting_with_a_scheduler(connection) or worker.poll() is not None)
            listed = [connection.hget(key, "birth") for key in connection.smembers("rq:workers")]
    finally:
        server.terminate()
        server.wait(timeout=10)
    stderr = "".join(lines)
    assert "RQ scheduler: Redis failed" in stderr, stderr
    assert worker_failed(lines) and "RQ worker: Redis answers again" in stderr, stderr
    assert markers == ["start:during the outage", "during the outage", "after the restart"], stderr
    assert len(listed) == 1 and listed[0], stderr
    assert worker.returncode == 0, stderr


def test_a_killed_scheduler_process_is_started_again(rq_url, settings):
    # The scheduler process killed outright (SIGKILL, the OOM killer) while its worker lives on:
    # RQ starts another only at the worker's maintenance, 10 minutes on (looked at between two
    # waits for jobs of 405 s each: up to 13.5 minutes), logging nothing. Every deferred task
    # waited: under traffic, 15,360 impressions and five scheduled flushes after four minutes.
    connection = redis.Redis.from_url(rq_url)
    with rq_worker_on(rq_url, settings) as (worker, lines):
        within(30, lambda: waiting_with_a_scheduler(connection))
        scheduler = [int(connection.hget(key, "pid")) for key in connection.keys("rq:scheduler:*")]
        for pid in scheduler:
            os.kill(pid, signal.SIGKILL)
        due = timezone.now() + datetime.timedelta(seconds=1)
        queue_tasks.record_marker.using(run_after=due).enqueue("after the kill")
        within(30, lambda: "after the kill" in queue_tasks.markers() or worker.poll() is not None)
        markers = queue_tasks.markers()
    stderr = "".join(lines)
    assert scheduler, stderr
    assert markers == ["after the kill"], stderr
    assert "RQ scheduler: its process" in stderr and "starting another" in stderr, stderr


def test_a_second_worker_takes_over_the_scheduler_of_one_killed_outright(rq_url, settings):
    # The scheduler of a worker killed outright stops with it and releases its lock; RQ's other
    # worker took the lock, and scheduled, only at its own maintenance, 10 minutes on.
    connection = redis.Redis.from_url(rq_url)
    with rq_worker_on(rq_url, settings) as (first, _):
        within(30, lambda: waiting_with_a_scheduler(connection))
        with rq_worker_on(rq_url, settings) as (second, lines):
            within(30, lambda: len(connection.smembers("rq:workers")) == 2)
            within(30, lambda: waiting_with_a_scheduler(connection))
            first.kill()
            first.wait(timeout=10)
            due = timezone.now() + datetime.timedelta(seconds=1)
            queue_tasks.record_marker.using(run_after=due).enqueue("after the kill")
            within(
                30, lambda: "after the kill" in queue_tasks.markers() or second.poll() is not None
            )
            markers = queue_tasks.markers()
    assert markers == ["after the kill"], "".join(lines)


@contextlib.contextmanager
def rq_worker_on(url, settings):
    """`runworker` on the RQ Redis at `url` (this test's TASKS and RQ_QUEUES pointed at it, the
    markers emptied): yields (the process, its stderr lines as they come); stopped with SIGTERM
    and waited for on the way out."""
    for name, value in rq_settings(url, TASK_MODULES=settings.TEST_TASK_MODULES).items():
        setattr(settings, name, value)
    queue_tasks.markers_client().delete(queue_tasks.MARKERS)
    worker = start_manage("runworker", env=worker_env(url))
    lines = []
    reader = threading.Thread(target=read_lines, args=(worker.stderr, lines), daemon=True)
    reader.start()
    try:
        yield worker, lines
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        reader.join(timeout=10)


def worker_failed(lines):
    return any("RQ worker: Redis failed" in line for line in lines)


def read_lines(stream, lines):
    """Append each line of `stream` to `lines` as it comes (a thread: the test reads them live)."""
    for line in stream:
        lines.append(line)


def running(pid):
    """Whether process `pid` runs (a zombie, or a process gone, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def waiting_with_a_scheduler(connection):
    """The worker waits for jobs (RQ sets it idle there) and its scheduler process has registered."""
    workers = connection.smembers("rq:workers")
    idle = bool(workers) and all(connection.hget(key, "state") == b"idle" for key in workers)
    return idle and bool(connection.keys("rq:scheduler:*"))


def test_runworker_refuses_a_queue_the_backend_does_not_have(rq_url, manage):
    result = manage("runworker", "--burst", "--queue", "defualt", env=worker_env(rq_url))
    assert result.returncode != 0
    assert "TASKS['default'] has no queue 'defualt': its QUEUES are default" in result.stderr


def test_the_worker_waits_out_a_failover_that_demotes_its_server(settings, tmp_path):
    # A failover turns the primary the worker is connected to into a replica: Redis answers the
    # command a worker waits in (BLMOVE) "UNBLOCKED … (master -> replica?)" and every write
    # "READONLY" until the endpoint names the new primary. Both are ResponseErrors, not
    # ConnectionErrors: the idle worker quit (exit 1) at the first failover it met.
    port, other_port = devservices.free_port(), devservices.free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = devservices.start_redis_server(port, tmp_path / "primary")
    other = devservices.start_redis_server(other_port, tmp_path / "other")
    try:
        with rq_worker_on(url, settings) as (worker, lines):
            connection = redis.Redis.from_url(url)
            within(30, lambda: waiting_with_a_scheduler(connection))
            connection.replicaof("127.0.0.1", other_port)  # demoted: the worker waits in BLMOVE
            within(15, lambda: worker_failed(lines) or worker.poll() is not None)
            time.sleep(1)  # a write or two meets READONLY
            connection.replicaof("NO", "ONE")  # the endpoint answers as a primary again
            queue_tasks.record_marker.enqueue("after the failover")
            within(40, lambda: queue_tasks.markers() or worker.poll() is not None)
            markers, exited = queue_tasks.markers(), worker.poll()
    finally:
        for process in (server, other):
            process.terminate()
            process.wait(timeout=10)
    stderr = "".join(lines)
    assert exited is None, stderr
    assert worker_failed(lines) and "RQ worker: Redis answers again" in stderr, stderr
    assert markers == ["after the failover"], stderr
    assert worker.returncode == 0, stderr


def test_after_a_failover_the_worker_reconnects_to_the_new_primary(settings, tmp_path):
    # The endpoint (here a forwarding port, as a DNS name) moves to the promoted replica; the
    # worker's open connections still reach the old primary, now a replica answering every write
    # READONLY. Kept in the pool, they failed every try for as long as the worker ran.
    primary_port, replica_port = devservices.free_port(), devservices.free_port()
    primary = devservices.start_redis_server(primary_port, tmp_path / "primary")
    replica = devservices.start_redis_server(replica_port, tmp_path / "replica")
    old, new = (redis.Redis(port=port) for port in (primary_port, replica_port))
    new.replicaof("127.0.0.1", primary_port)
    endpoint = Forwarder(primary_port)
    url = f"redis://127.0.0.1:{endpoint.port}/0"
    try:
        with rq_worker_on(url, settings) as (worker, lines):
            within(30, lambda: waiting_with_a_scheduler(redis.Redis.from_url(url)))
            queue_tasks.held_marker.enqueue("during the failover", 30)
            within(30, lambda: "start:during the failover" in queue_tasks.markers())
            within(10, lambda: new.info("replication")["master_link_status"] == "up")
            new.replicaof("NO", "ONE")  # the failover: the replica is promoted, the primary demoted
            old.replicaof("127.0.0.1", replica_port)
            endpoint.target = replica_port
            queue_tasks.release("during the failover")  # the task ends; its outcome meets READONLY
            within(15, lambda: any("read only replica" in line for line in lines) or worker.poll())
            redis.Redis.from_url(url).ping()  # the test's own connections: fresh ones, to the new
            task_backends["default"].connection().connection_pool.disconnect()
            queue_tasks.record_marker.enqueue("after the failover")
            within(40, lambda: "after the failover" in queue_tasks.markers() or worker.poll())
            markers, exited = queue_tasks.markers(), worker.poll()
    finally:
        endpoint.close()
        for process in (primary, replica):
            process.terminate()
            process.wait(timeout=10)
    stderr = "".join(lines)
    assert exited is None, stderr
    assert markers[-1:] == ["after the failover"], stderr
    assert worker.returncode == 0, stderr
