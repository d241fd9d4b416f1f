"""Async task functions (`async def`) on SQS (moto over HTTP): enqueued, run, retried, timed out."""

import asyncio
import time

import pytest
from django.tasks import TaskResultStatus

from tests.processes import run_manage
from tests.queues import tasks as queue_tasks
from tests.queues.sqs.support import (
    burst_timing_out_twice,
    dlq_reasons,
    message_count,
    run_burst,
    worker_env,
)

# django_db: the in-process worker calls close_old_connections() between jobs (see tests/queues/rq).
pytestmark = [pytest.mark.sqs, pytest.mark.django_db]


def test_an_async_task_runs_with_its_signals_and_return_value(sqs, task_signals):
    seen = task_signals
    enqueued = queue_tasks.async_marker.enqueue("sync-caller")
    # Refused before: InvalidTask("Backend does not support async Tasks."), at enqueue as at @task.
    awaited = asyncio.run(queue_tasks.async_marker.aenqueue("async-caller"))
    assert run_burst() == 0
    assert sorted(queue_tasks.markers()) == ["async:async-caller", "async:sync-caller"]
    for sent, name in ((enqueued, "sync-caller"), (awaited, "async-caller")):
        statuses = [status for id_, status, _ in seen if id_ == sent.id]
        assert statuses == [TaskResultStatus.RUNNING, TaskResultStatus.SUCCESSFUL]
        [finished] = [result for id_, _, result in seen if id_ == sent.id][-1:]
        assert finished.return_value == name
    assert message_count(sqs.client, sqs.url) == 0


def test_an_async_task_s_failures_are_attempts_retried_with_its_context(sqs, settings):
    settings.TASKS["default"]["OPTIONS"].update(MAX_ATTEMPTS=2, RETRY_DELAY=0)
    queue_tasks.async_fail_until.enqueue("flaky", 2)
    queue_tasks.async_fail_until.enqueue("broken", 3)
    run_burst()  # a retry delay of 0: every attempt is received again at once
    assert [attempt for attempt, _ in queue_tasks.attempts_of("flaky")] == [1, 2]
    assert [attempt for attempt, _ in queue_tasks.attempts_of("broken")] == [1, 2]
    assert dlq_reasons(sqs) == ["failed on attempt 2 of 2"]
    assert message_count(sqs.client, sqs.url) == 0


def test_an_async_task_past_job_timeout_is_stopped_at_its_await(sqs, settings, caplog):
    settings.TASKS["default"]["OPTIONS"].update(JOB_TIMEOUT=1, MAX_ATTEMPTS=2, RETRY_DELAY=0)
    queue_tasks.async_slow_marker.enqueue("stuck", 30)
    burst_timing_out_twice(caplog)
    # Stopped at its await each time it started, before the worker went on: not left running. An
    # attempt whose timeout came before its coroutine ran (a loaded machine: 2.96 s to start in a
    # CI run) is stopped before it starts, and marks nothing.
    markers = queue_tasks.markers()
    assert markers in (["start:stuck", "unwound:stuck"], ["start:stuck", "unwound:stuck"] * 2)
    assert dlq_reasons(sqs) == ["timed-out on attempt 2 of 2"]


def test_runworker_runs_async_tasks_and_stops_one_past_job_timeout(sqs):
    queue_tasks.async_marker.enqueue("a")
    queue_tasks.async_slow_marker.enqueue("stuck", 30)
    env = worker_env(sqs, SQS_JOB_TIMEOUT="1", TASKS_MAX_ATTEMPTS="1")
    started = time.monotonic()
    result = run_manage("runworker", "--burst", env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 20, result.stderr
    assert sorted(queue_tasks.markers()) == ["async:a", "start:stuck", "unwound:stuck"]
    lines = [line for line in result.stderr.splitlines() if "outcome=" in line]
    assert sum("outcome=succeeded" in line for line in lines) == 1, lines
    assert sum("outcome=timed-out" in line for line in lines) == 1, lines
