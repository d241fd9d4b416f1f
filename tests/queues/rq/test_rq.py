"""The RQ backend and worker in this process on the real Redis: run, defer, results, timeout."""

import contextlib
import datetime
import logging
import os
import signal
import sys
import time
import uuid

import pytest
import redis
import rq.utils
from django.tasks import TaskResultStatus, task_backends
from django.tasks.exceptions import TaskResultDoesNotExist
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils import timezone
from prometheus_client import REGISTRY
from rq import Queue
from rq.exceptions import StopRequested
from rq.serializers import JSONSerializer

from queues.rq import jobs
from queues.rq.worker import RQWorker, TaskJob, TaskWorker
from queues.runner import stop_handlers
from tests.queues import tasks as queue_tasks
from tests.queues.rq.support import rq_settings, run_burst

# The in-process worker calls close_old_connections() between jobs, as in production: without
# database access that fails whenever an earlier test left a connection open.
pytestmark = pytest.mark.django_db


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


def test_failed_task_result_names_the_exception(rq_url, settings):
    settings.TASKS["default"]["OPTIONS"]["MAX_ATTEMPTS"] = 1
    result = queue_tasks.fail_always.enqueue("x")
    run_burst()
    fetched = task_backends["default"].get_result(result.id)
    assert fetched.status == TaskResultStatus.FAILED
    assert fetched.errors[0].exception_class is RuntimeError
    assert "fails on purpose" in fetched.errors[0].traceback


def test_a_failed_task_s_traceback_hides_a_url_s_password_in_the_logs_and_its_result(
    rq_url, settings, caplog
):
    # A task whose error names a URL with a password (a connection string): the worker's lines
    # (queues.worker, and RQ's own rq.worker with the traceback) under a project's own logging
    # config (caplog's plain handler), and the traceback RQ stores, which get_result() returns.
    settings.TASKS["default"]["OPTIONS"]["MAX_ATTEMPTS"] = 1
    secret = "s3cret-Pa55"
    result = queue_tasks.fail_always.enqueue(f"redis://:{secret}@cache:6379/0")
    with caplog.at_level(logging.INFO):
        run_burst()
    [error] = task_backends["default"].get_result(result.id).errors
    assert "RuntimeError: task redis://:***@cache:6379/0 fails on purpose" in error.traceback
    assert secret not in error.traceback
    assert "RuntimeError: task redis://:***@cache:6379/0 fails on purpose" in caplog.text
    assert secret not in caplog.text


def test_a_task_that_calls_sys_exit_fails_naming_it_and_the_worker_goes_on(rq_url, settings):
    settings.TASKS["default"]["OPTIONS"]["MAX_ATTEMPTS"] = 1
    result = queue_tasks.exits.enqueue("x")
    queue_tasks.record_marker.enqueue("after")
    run_burst()
    assert sorted(queue_tasks.markers()) == ["after", "exited:x"]
    fetched = task_backends["default"].get_result(result.id)
    assert fetched.status == TaskResultStatus.FAILED
    # Not RQ's builtins.Exception: the task's own SystemExit, as Django's backends say.
    assert fetched.errors[0].exception_class is SystemExit


def test_a_result_ttl_of_0_discards_the_result_and_logs_the_task_succeeded(
    rq_url, settings, caplog
):
    # RQ deletes a job kept 0 s as soon as it finishes: the worker's status read raised
    # InvalidJobOperation, logged "Handling job … failed" with a traceback and no outcome line.
    settings.TASKS["default"]["OPTIONS"]["RESULT_TTL"] = 0
    result = queue_tasks.record_marker.enqueue("kept-0-s")
    with caplog.at_level(logging.INFO, logger="queues.worker"):
        assert run_burst() == 0
    assert queue_tasks.markers() == ["kept-0-s"]
    logged = [record.getMessage() for record in caplog.records if record.name == "queues.worker"]
    assert not [line for line in logged if "failed" in line], logged
    outcomes = [line for line in logged if "outcome=" in line]
    assert len(outcomes) == 1 and f"id={result.id} outcome=succeeded" in outcomes[0], logged
    with pytest.raises(TaskResultDoesNotExist):
        task_backends["default"].get_result(result.id)


def test_an_id_no_job_can_have_is_no_result_not_a_value_error(rq_url):
    # The flush-now waiting page passes its URL's id here: RQ's own check raised ValueError (a 500).
    backend = task_backends["default"]
    for result_id in ("a.b", "..", "a\x00b", "x:y", "x" * 200):
        with pytest.raises(TaskResultDoesNotExist):
            backend.get_result(result_id)


def test_run_after_is_honoured_by_the_scheduler(rq_url):
    due = timezone.now() + datetime.timedelta(seconds=2)
    result = queue_tasks.record_marker.using(run_after=due).enqueue("later")
    run_burst()
    assert queue_tasks.markers() == []
    assert task_backends["default"].get_result(result.id).status == TaskResultStatus.READY
    time.sleep(max(0, (due - timezone.now()).total_seconds()) + 0.2)
    run_burst()
    assert queue_tasks.markers() == ["later"]


def test_a_deferred_task_s_result_keeps_its_enqueue_time(rq_url, settings):
    # RQ's enqueued_at is unset while a job waits in the scheduled registry, and moves on each
    # retry: refresh() on the result enqueue() returned set enqueued_at to None.
    settings.TASKS["default"]["OPTIONS"].update(MAX_ATTEMPTS=2, RETRY_DELAY=0)
    due = timezone.now() + datetime.timedelta(seconds=1)
    result = queue_tasks.fail_until.using(run_after=due).enqueue("deferred", 2)
    waiting = task_backends["default"].get_result(result.id)
    assert waiting.status == TaskResultStatus.READY
    assert waiting.enqueued_at is not None
    assert abs(waiting.enqueued_at - result.enqueued_at) < datetime.timedelta(seconds=1)
    time.sleep(max(0, (due - timezone.now()).total_seconds()) + 0.2)
    run_burst()
    run_burst()  # the retry, after its delay of 0 s
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.attempts == 2
    assert result.enqueued_at == waiting.enqueued_at
    assert result.enqueued_at < due <= result.started_at


def test_a_result_s_task_names_the_backend_and_queue_it_was_enqueued_on(rq_url, settings):
    # The result's task was the registered one, as decorated (backend "default", its queue):
    # refresh() of a fetched result then asked the default backend, here Django's dummy one.
    rq = {**settings.TASKS["default"], "QUEUES": ["default", "other"]}
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}, "rq": rq}
    settings.RQ_QUEUES = {**settings.RQ_QUEUES, "other": settings.RQ_QUEUES["default"]}
    result = queue_tasks.context_task.using(backend="rq", queue_name="other").enqueue()
    assert run_burst_of("rq") == 0
    fetched = task_backends["rq"].get_result(result.id)
    assert (fetched.task.backend, fetched.task.queue_name) == ("rq", "other")
    fetched.refresh()
    assert fetched.status == TaskResultStatus.SUCCESSFUL
    assert fetched.return_value == ["rq", "other"]  # the task's own context says the same


def run_burst_of(alias):
    return RQWorker(task_backends[alias], burst=True).run()


# transaction: the worker closes the connection, which restoring TIME_ZONE then reconfigures.
@pytest.mark.django_db(transaction=True)
def test_without_use_tz_results_and_tasks_get_naive_times(rq_url, settings):
    # Django's times are naive when USE_TZ = False (timezone.now(), the result enqueue() returns);
    # RQ's are aware UTC, and comparing the two raised TypeError.
    settings.USE_TZ, settings.TIME_ZONE = False, "Asia/Tokyo"
    result = queue_tasks.context_times.enqueue()
    run_burst()
    fetched = task_backends["default"].get_result(result.id)
    assert fetched.status == TaskResultStatus.SUCCESSFUL
    times = (
        fetched.enqueued_at,
        fetched.started_at,
        fetched.last_attempted_at,
        fetched.finished_at,
    )
    assert all(timezone.is_naive(moment) for moment in times)
    assert result.enqueued_at - datetime.timedelta(seconds=1) < fetched.enqueued_at
    assert fetched.enqueued_at <= fetched.started_at <= fetched.finished_at <= timezone.now()
    seen = [datetime.datetime.fromisoformat(moment) for moment in fetched.return_value]
    assert all(timezone.is_naive(moment) for moment in seen)
    assert seen == [fetched.enqueued_at, seen[1]] and seen[1] >= fetched.enqueued_at


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


def test_an_idle_stop_swallowed_by_the_interpreter_still_ends_the_loop(rq_url):
    worker = TaskWorker(["default"], connection=redis.Redis.from_url(rq_url), job_class=TaskJob)
    # What RQ's SIGTERM handler does when no job runs; the exception is dropped, as when the
    # signal lands in a __del__ or an import's module-lock callback.
    with contextlib.suppress(StopRequested):
        worker._shutdown()
    assert worker._stop_requested  # the work loop breaks at its next turn


def test_a_burst_s_redis_error_that_rq_waited_out_is_not_what_ended_it(rq_url):
    # A burst reports an outage (runworker exits 1) by re-raising; RQ's own dequeue loop may
    # catch that and wait Redis out. Once a later step succeeds, the error no longer ends it.
    worker = TaskWorker(["default"], connection=redis.Redis.from_url(rq_url), job_class=TaskJob)
    worker.burst = True

    def refused():
        raise redis.ConnectionError("Connection refused")

    with pytest.raises(redis.ConnectionError):
        worker._until_redis_answers(refused)
    assert isinstance(worker.loop_error, redis.ConnectionError)
    assert worker._until_redis_answers(lambda: "answered") == "answered"
    assert worker.loop_error is None


# pytest's process has threads of earlier tests; the scheduler's process only runs its loop.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_stop_sent_to_the_scheduler_as_it_starts_stops_it(rq_url):
    # The worker stops its scheduler's process with SIGTERM (a stop right after start-up): one
    # arriving before that process had its own handlers ran the worker's, copied by the fork,
    # and the scheduler, hence the worker waiting for it, never stopped.
    worker = TaskWorker(["default"], connection=redis.Redis.from_url(rq_url), job_class=TaskJob)
    with stop_handlers(worker._stop_before_loop):  # as in TaskWorker.work
        worker._start_scheduler()
        process = worker.scheduler._process
        os.kill(process.pid, signal.SIGTERM)  # at once: before it installs its own handlers
    process.join(timeout=10)
    if process.is_alive():
        process.kill()
        process.join()
        pytest.fail("the scheduler's process ignored the stop")
    assert process.exitcode == 0


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize("step", ["heartbeat", "run_maintenance_tasks"])
def test_a_dead_scheduler_is_started_again_only_with_its_lock(rq_url, step):
    # The scheduler's process died during a long job (SimpleWorker: no heartbeat meanwhile), its
    # lock lapsed 61 s later and another worker's scheduler took it. rq 2.10's acquire_locks
    # keeps every lock a scheduler ever had, taken or not: the worker (at its next heartbeat, or
    # RQ's maintenance after the job) started a second scheduler beside the other worker's, and
    # each due job was enqueued by both, run twice.
    connection = redis.Redis.from_url(rq_url)
    worker = TaskWorker(["default"], connection=connection, job_class=TaskJob)
    worker.last_cleaned_at = rq.utils.now()  # not the first maintenance, which starts none
    worker._start_scheduler()
    scheduler, dead = worker.scheduler, worker.scheduler._process
    lock = scheduler.get_locking_key("default")
    try:
        os.kill(dead.pid, signal.SIGKILL)
        dead.join(timeout=10)
        connection.set(lock, "another-worker-s-scheduler", ex=61)
        getattr(worker, step)()
        assert scheduler._process is dead  # none started
        assert connection.get(lock) == b"another-worker-s-scheduler"
        # Its own lock, left by the dead process: started again at once.
        connection.set(lock, scheduler.name, ex=61)
        getattr(worker, step)()
        assert scheduler._process is not dead and scheduler._process.is_alive()
    finally:
        if scheduler._process.is_alive():
            os.kill(scheduler._process.pid, signal.SIGTERM)
            scheduler._process.join(timeout=10)


def test_the_worker_s_channel_thread_ends_within_seconds_of_its_stop(rq_url):
    # RQ's thread waits 60 s for a message before it looks at its flag; redis-py 8.2's stop()
    # waits for the thread, so a worker took up to a minute to stop.
    worker = TaskWorker(["default"], connection=redis.Redis.from_url(rq_url), job_class=TaskJob)
    worker.subscribe()
    time.sleep(0.2)  # the thread is in its wait
    started = time.monotonic()
    worker.pubsub_thread._running.clear()  # what stop() does before it waits (8.2) or not (8.1)
    worker.pubsub_thread.join(10)
    assert not worker.pubsub_thread.is_alive()
    assert time.monotonic() - started < 3
    worker.pubsub.close()


@pytest.mark.parametrize("pause", [0, 0.5, 0.95, 1.0, 1.05])
def test_unsubscribing_closes_the_channel_once_whenever_the_thread_wakes(rq_url, pause):
    # The thread closes the pubsub as its loop ends; RQ's unsubscribe closed it again after a 1 s
    # join, and the two closes could meet when the thread woke about then.
    worker = TaskWorker(["default"], connection=redis.Redis.from_url(rq_url), job_class=TaskJob)
    worker.subscribe()
    time.sleep(pause)
    worker.unsubscribe()  # raised AttributeError from redis-py's PubSub.reset when they met
    assert not worker.pubsub_thread.is_alive()
    assert worker.pubsub.connection is None  # closed


def test_a_stop_between_a_command_and_its_reply_leaves_a_clean_goodbye(rq_url):
    # RQ's stop handler raises wherever the main thread is: after a command was sent and before
    # its reply was read, that connection goes back to the pool with the reply in flight. The
    # worker's goodbye (register_death's transaction) must not read that stale reply.
    connection = redis.Redis.from_url(rq_url)
    worker = TaskWorker(["default"], connection=connection, job_class=TaskJob)
    worker.register_birth()
    interrupted = connection.connection_pool.get_connection()
    interrupted.send_command("BLPOP", "casusult-test-nothing", "0.2")  # replies in 0.2 s
    connection.connection_pool.release(interrupted)
    worker.teardown()
    assert worker.key.encode() not in connection.smembers("rq:workers")  # deregistered
    assert connection.hget(worker.key, "death") is not None


def test_ping_answers_for_a_live_redis_and_raises_for_a_dead_one(rq_url, settings):
    task_backends["default"].ping()
    for name, value in rq_settings("redis://127.0.0.1:9/0?socket_timeout=1").items():
        setattr(settings, name, value)
    with pytest.raises(redis.ConnectionError):
        task_backends["default"].ping()


def test_a_refused_path_is_never_imported_and_is_counted(rq_url, caplog):
    queue_tasks.markers_client().delete(queue_tasks.SIDE_EFFECT_KEY)
    counted = {"backend": "default", "reason": "not-allowed"}
    before = REGISTRY.get_sample_value("tasks_refused_total", counted) or 0
    queue = Queue("default", connection=redis.Redis.from_url(rq_url), serializer=JSONSerializer)
    # Our own job format, naming a Task in a module outside the allowed ones.
    path = f"{queue_tasks.SIDE_EFFECT_MODULE}.harmless"
    planted = queue.enqueue_call(jobs.TRAMPOLINE, args=(path, [], {}), meta={"backend": "default"})
    with caplog.at_level(logging.INFO, logger="queues.worker"):
        run_burst()
    assert queue_tasks.SIDE_EFFECT_MODULE not in sys.modules  # the worker ran in this process
    assert queue_tasks.side_effect_imports() == 0
    assert queue.failed_job_registry.get_job_ids() == [planted.id]
    refused = [r.getMessage() for r in caplog.records if "outcome=refused" in r.getMessage()]
    assert len(refused) == 1 and "is not registered" in refused[0]
    assert REGISTRY.get_sample_value("tasks_refused_total", counted) == before + 1
