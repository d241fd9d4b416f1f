"""SQS retries on moto over HTTP: the next attempt is re-sent with its delay; context.attempt."""

import itertools
import json
import threading

import pytest

from tests.queues import tasks as queue_tasks
from tests.queues.sqs.support import dlq_bodies, message_count, sqs_worker

# django_db: the in-process worker calls close_old_connections() between jobs (see test_sqs.py).
pytestmark = [pytest.mark.sqs, pytest.mark.django_db]


def run_worker_for(jobs):
    """A (non-burst) worker in a thread until it has handled `jobs` messages; returns it."""
    worker = sqs_worker(max_jobs=jobs)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the worker did not handle its messages in time"
    return worker


def test_a_task_failing_twice_succeeds_on_its_third_attempt_after_the_delays(sqs, settings):
    settings.TASKS["default"]["OPTIONS"].update(MAX_ATTEMPTS=3, RETRY_DELAY=1)
    queue_tasks.fail_until.enqueue("flaky", 3)
    run_worker_for(3)
    attempts = queue_tasks.attempts_of("flaky")
    assert [attempt for attempt, _ in attempts] == [1, 2, 3]  # context.attempt counts from 1
    gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(attempts)]
    assert 1 <= gaps[0] < 1 + 2, gaps  # DelaySeconds: RETRY_DELAY
    assert 2 <= gaps[1] < 2 + 2, gaps  # doubled
    assert message_count(sqs.client, sqs.url) == 0
    assert dlq_bodies(sqs) == []


def test_an_always_failing_task_runs_max_attempts_times_then_goes_to_the_dlq(sqs, settings):
    settings.TASKS["default"]["OPTIONS"].update(MAX_ATTEMPTS=2, RETRY_DELAY=1)
    result = queue_tasks.fail_always.enqueue("x")
    run_worker_for(2)
    assert queue_tasks.markers() == ["failed:x"] * 2
    assert message_count(sqs.client, sqs.url) == 0
    [body] = dlq_bodies(sqs)
    assert (json.loads(body)["id"], json.loads(body)["attempt"]) == (result.id, 3)
