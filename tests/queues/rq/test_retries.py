"""RQ retries on the real Redis, in this process: backoff, attempts, the failed registry, timeouts."""

import itertools
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
from django.tasks import TaskResultStatus, task_backends
from django.utils import timezone
from rq import Queue
from rq.serializers import JSONSerializer

from impressions import tasks as impressions_tasks
from impressions.exceptions import RedisUnavailable
from queues.rq.jobs import server_now
from tests.queues import tasks as queue_tasks
from tests.queues.rq.support import run_burst

# The in-process worker calls close_old_connections() between jobs (see test_rq.py).
pytestmark = pytest.mark.django_db


def rq_queue(url):
    return Queue("default", connection=redis.Redis.from_url(url), serializer=JSONSerializer)


def burst_until(predicate, within=15):
    """Burst workers one after the other (each starts by moving due scheduled jobs to the queue)
    until `predicate()` holds."""
    deadline = time.monotonic() + within
    while not predicate() and time.monotonic() < deadline:
        run_burst()
        time.sleep(0.1)
    return predicate()


def test_a_task_failing_twice_succeeds_on_its_third_attempt_after_the_delays(rq_url, settings):
    settings.TASKS["default"]["OPTIONS"].update(MAX_ATTEMPTS=3, RETRY_DELAY=2)
    result = queue_tasks.fail_until.enqueue("flaky", 3)
    assert burst_until(lambda: len(queue_tasks.attempts_of("flaky")) == 3)
    attempts = queue_tasks.attempts_of("flaky")
    assert [attempt for attempt, _ in attempts] == [1, 2, 3]  # context.attempt counts from 1
    gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(attempts)]
    # RQ's scheduler counts whole seconds: a retry may start up to one second early.
    assert 1 < gaps[0] < 2 + 1.5, gaps  # RETRY_DELAY
    assert 3 < gaps[1] < 4 + 1.5, gaps  # doubled
    fetched = task_backends["default"].get_result(result.id)
    assert fetched.status == TaskResultStatus.SUCCESSFUL
    assert (fetched.return_value, fetched.attempts) == (3, 3)
    assert not rq_queue(rq_url).failed_job_registry.get_job_ids()


def test_an_always_failing_task_runs_max_attempts_times_then_is_in_the_failed_registry(
    rq_url, settings, caplog
):
    settings.TASKS["default"]["OPTIONS"].update(MAX_ATTEMPTS=3, RETRY_DELAY=0)
    result = queue_tasks.fail_always.enqueue("x")
    with caplog.at_level(logging.INFO, logger="queues.worker"):
        run_burst()  # no delay: each retry is queued again at once, within this burst
        run_burst()  # nothing more
    assert queue_tasks.markers() == ["failed:x"] * 3
    assert rq_queue(rq_url).failed_job_registry.get_job_ids() == [result.id]
    lines = [r.getMessage() for r in caplog.records if "outcome=failed" in r.getMessage()]
    assert ["attempt=1/3 next_attempt_in=0s" in lines[0], "attempt=3/3" in lines[2]] == [1, 1]
    assert lines[2].endswith("next=failed-registry")
    assert task_backends["default"].get_result(result.id).status == TaskResultStatus.FAILED


# transaction: the worker closes the connection, which restoring TIME_ZONE then reconfigures.
@pytest.mark.django_db(transaction=True)
def test_without_use_tz_a_retry_s_delay_is_logged(rq_url, settings, caplog):
    """USE_TZ = False: RQ's scheduled time (aware) against the naive now, in the failure's line."""
    settings.USE_TZ, settings.TIME_ZONE = False, "Asia/Tokyo"
    settings.TASKS["default"]["OPTIONS"].update(MAX_ATTEMPTS=2, RETRY_DELAY=30)
    queue_tasks.fail_always.enqueue("naive")
    with caplog.at_level(logging.INFO, logger="queues.worker"):
        run_burst()
    lines = [r.getMessage() for r in caplog.records if "outcome=failed" in r.getMessage()]
    assert len(lines) == 1 and "attempt=1/2 next_attempt_in=" in lines[0], lines
    delay = int(lines[0].split("next_attempt_in=")[1].split("s")[0])
    assert 25 <= delay <= 30


def test_a_timed_out_attempt_counts_as_a_failed_one(rq_url, settings, caplog):
    settings.TASKS["default"]["OPTIONS"].update(JOB_TIMEOUT=1, MAX_ATTEMPTS=2, RETRY_DELAY=0)
    result = queue_tasks.slow_marker.enqueue("stuck", 30)
    with caplog.at_level(logging.INFO, logger="queues.worker"):
        run_burst()  # in this (main) thread, where RQ's SIGALRM death penalty works
    assert queue_tasks.markers() == ["start:stuck"] * 2
    timed_out = [r.getMessage() for r in caplog.records if "outcome=timed-out" in r.getMessage()]
    assert len(timed_out) == 2, timed_out
    assert "attempt=2/2 next=failed-registry" in timed_out[1]
    assert rq_queue(rq_url).failed_job_registry.get_job_ids() == [result.id]


def test_the_impressions_flush_re_arms_only_after_its_last_attempt(rq_url, settings, monkeypatch):
    # Re-arming on every failure would add a second flush next to each retry.
    settings.TASKS["default"]["OPTIONS"].update(MAX_ATTEMPTS=3, RETRY_DELAY=0)
    rearmed = []
    monkeypatch.setattr(impressions_tasks, "rearm_after_failure", rearmed.append)

    def redis_down(*args, **kwargs):
        raise RedisUnavailable("on purpose")

    monkeypatch.setattr(impressions_tasks, "flush_pending", redis_down)
    result = impressions_tasks.flush_impressions_task.enqueue()
    run_burst()  # no delay: the three attempts run in this burst
    assert rq_queue(rq_url).failed_job_registry.get_job_ids() == [result.id]
    assert task_backends["default"].get_result(result.id).attempts == 3
    assert len(rearmed) == 1  # after the third attempt only


# transaction: as above, restoring TIME_ZONE reconfigures the connection.
@pytest.mark.django_db(transaction=True)
def test_without_use_tz_run_after_is_scheduled_at_time_zone_s_wall_clock(rq_url, settings):
    """USE_TZ = False: a naive run_after is TIME_ZONE's wall clock. RQ reads a naive time with
    the process zone's DST offset whenever the zone has DST at all (time.altzone), an hour early
    in a Paris winter: a task due later ran at once."""
    settings.USE_TZ, settings.TIME_ZONE = False, "Europe/Paris"
    due = datetime(2099, 1, 15, 12, 0)  # winter: UTC+1
    result = queue_tasks.record_marker.using(run_after=due).enqueue("in winter")
    scheduled = rq_queue(rq_url).scheduled_job_registry.get_scheduled_time(result.id)
    assert scheduled == datetime(2099, 1, 15, 11, 0, tzinfo=UTC)


@pytest.mark.django_db(transaction=True)
def test_without_use_tz_a_run_after_in_a_repeated_hour_is_scheduled_at_its_real_time(
    rq_url, settings, monkeypatch
):
    """USE_TZ = False in New York, at 01:58 EDT on 1 November 2026 (05:58 UTC), when 01:00-02:00
    comes twice: a run_after of 01:03 EST (fold 1) is 5 minutes later. Compared by wall clocks it
    was in the past, and the task was queued to run at once."""
    settings.USE_TZ, settings.TIME_ZONE = False, "America/New_York"
    monkeypatch.setattr(timezone, "now", lambda: datetime(2026, 11, 1, 1, 58))
    due = datetime(2026, 11, 1, 1, 3, fold=1)
    result = queue_tasks.record_marker.using(run_after=due).enqueue("5 minutes later")
    queue = rq_queue(rq_url)
    assert queue.get_job_ids() == []
    # Due 5 minutes later by the server's clock, which the scheduler reads (this host's is faked).
    delay = queue.scheduled_job_registry.get_scheduled_time(result.id) - server_now(
        queue.connection
    )
    assert timedelta(minutes=4, seconds=58) <= delay <= timedelta(minutes=5, seconds=1)
