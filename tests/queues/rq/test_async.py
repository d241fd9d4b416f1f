"""Async task functions (`async def`) on RQ, on the real Redis: enqueued, run, retried, timed out."""

import asyncio
import logging
import time
import uuid

import pytest
from django.tasks import TaskResultStatus

from tests.processes import start_manage
from tests.queues import tasks as queue_tasks
from tests.queues.rq.support import run_burst, stopped_by_a_second_sigterm, worker_env

# The in-process worker calls close_old_connections() between jobs (see test_rq.py).
pytestmark = pytest.mark.django_db


def test_an_async_task_runs_with_its_signals_and_its_result_is_stored(rq_url, task_signals):
    enqueued = queue_tasks.async_marker.enqueue("sync-caller")
    # Refused before: InvalidTask("Backend does not support async Tasks."), at enqueue as at @task.
    awaited = asyncio.run(queue_tasks.async_marker.aenqueue("async-caller"))
    assert run_burst() == 0
    assert sorted(queue_tasks.markers()) == ["async:async-caller", "async:sync-caller"]
    for result, name in ((enqueued, "sync-caller"), (awaited, "async-caller")):
        assert [status for id_, status, _ in task_signals if id_ == result.id] == [
            TaskResultStatus.RUNNING,
            TaskResultStatus.SUCCESSFUL,
        ]
        result.refresh()
        assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, name)


def test_an_async_task_s_failures_are_attempts_retried_with_its_context(rq_url, settings):
    settings.TASKS["default"]["OPTIONS"].update(MAX_ATTEMPTS=2, RETRY_DELAY=0)
    flaky = queue_tasks.async_fail_until.enqueue("flaky", 2)
    broken = queue_tasks.async_fail_until.enqueue("broken", 3)
    run_burst()  # no delay: each retry is queued again at once, within this burst
    run_burst()
    assert [attempt for attempt, _ in queue_tasks.attempts_of("flaky")] == [1, 2]
    assert [attempt for attempt, _ in queue_tasks.attempts_of("broken")] == [1, 2]
    flaky.refresh()
    assert (flaky.status, flaky.return_value, flaky.attempts) == (TaskResultStatus.SUCCESSFUL, 2, 2)
    broken.refresh()
    assert broken.status == TaskResultStatus.FAILED
    assert broken.errors[-1].exception_class is RuntimeError
    assert "attempt 2 of broken fails on purpose" in broken.errors[-1].traceback


def test_an_async_task_past_job_timeout_is_stopped_at_its_await(rq_url, settings, caplog):
    settings.TASKS["default"]["OPTIONS"].update(JOB_TIMEOUT=1, MAX_ATTEMPTS=1)
    result = queue_tasks.async_slow_marker.enqueue("stuck", 30)
    queue_tasks.record_marker.enqueue("after")
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="queues.worker"):
        run_burst()  # in this (main) thread, where RQ's SIGALRM death penalty works
    assert time.monotonic() - started < 10
    # Stopped, not left running on in its event loop: it unwound before the next job ran.
    assert queue_tasks.markers() == ["start:stuck", "unwound:stuck", "after"]
    outcomes = [r.getMessage() for r in caplog.records if "outcome=" in r.getMessage()]
    timed_out = [line for line in outcomes if "outcome=timed-out" in line]
    assert len(timed_out) == 1 and "reason=JOB_TIMEOUT (1 s)" in timed_out[0], outcomes
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path == "rq.timeouts.JobTimeoutException"
    time.sleep(0.5)
    assert "stuck" not in queue_tasks.markers()


@pytest.mark.django_db(transaction=True)
def test_a_timed_out_async_task_s_query_is_cancelled_on_the_server(rq_url, settings):
    # Its sync_to_async query runs on the worker's own thread and connection, which the timeout
    # cancels (and the worker closes), as a sync task's.
    settings.TASKS["default"]["OPTIONS"]["JOB_TIMEOUT"] = 1
    tag = uuid.uuid4().hex
    queue_tasks.async_hold_database.enqueue(30, tag)
    queue_tasks.record_marker.enqueue("after")
    started = time.monotonic()
    run_burst()
    assert time.monotonic() - started < 10
    assert queue_tasks.markers() == ["querying", "after"]
    assert queue_tasks.no_query_held(tag)  # without the cancel: 30 s


def test_a_sync_task_still_runs_on_the_worker_s_thread_without_an_event_loop(rq_url):
    result = queue_tasks.where_it_runs.enqueue()
    run_burst()
    result.refresh()
    assert result.return_value == [True, False]  # main thread, no running loop


def test_a_second_sigterm_mid_async_task_stops_the_worker_at_once(rq_url):
    # The cold shutdown's exit, raised in the worker's thread while the coroutine ran in its
    # event loop's, would have left the coroutine running: the process then waited for it.
    queue_tasks.async_slow_marker.enqueue("long", 20)
    process = start_manage("runworker", env=worker_env(rq_url))
    stderr = stopped_by_a_second_sigterm(process, "start:long")
    assert queue_tasks.markers() == ["start:long", "unwound:long"]  # cut short at its await
    assert "outcome=failed" in stderr and "next_attempt_in=10s" in stderr, stderr


def burst_with_a_1_s_job_timeout(settings, task, name):
    """Enqueue task(name, 30) and a marker "after" with JOB_TIMEOUT 1 and one attempt, and run a
    burst: it ends within 10 s (the task would hold it 30 s). Returns the task's result."""
    settings.TASKS["default"]["OPTIONS"].update(JOB_TIMEOUT=1, MAX_ATTEMPTS=1)
    result = task.enqueue(name, 30)
    queue_tasks.record_marker.enqueue("after")
    started = time.monotonic()
    run_burst()
    assert time.monotonic() - started < 10
    return result


def test_job_timeout_stops_what_an_async_task_left_running_in_its_loop(rq_url, settings):
    # The coroutine returned, but its event loop ends only once its background tasks have: one
    # whose cleanup awaits 30 s held the worker, past JOB_TIMEOUT, which no longer reached it.
    result = burst_with_a_1_s_job_timeout(settings, queue_tasks.async_leaves_background, "left")
    assert queue_tasks.markers() == ["returned:left", "cleanup:left", "cleaned:left", "after"]
    result.refresh()  # its own code returned: not timed out
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, "left")


def test_a_second_sigterm_stops_what_an_async_task_left_running_in_its_loop(rq_url):
    queue_tasks.async_leaves_background.enqueue("left", 20)
    process = start_manage("runworker", env=worker_env(rq_url))
    stopped_by_a_second_sigterm(process, "cleanup:left")
    assert queue_tasks.markers() == ["returned:left", "cleanup:left", "cleaned:left"]


def test_job_timeout_interrupts_a_sync_call_an_async_task_awaits(rq_url, settings):
    # sync_to_async runs it on the worker's thread, where the alarm arrives: it is interrupted
    # there as a sync task's code is, not left to block the worker for its 30 s.
    result = burst_with_a_1_s_job_timeout(settings, queue_tasks.async_blocking_call, "blocked")
    assert queue_tasks.markers() == ["start:blocked", "unwound:blocked", "after"]
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path == "rq.timeouts.JobTimeoutException"
