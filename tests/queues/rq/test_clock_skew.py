"""A deferred job is due by the RQ Redis's clock, whatever the clocks of the hosts that enqueue
and run it say (they drift by seconds, or by minutes after a bad boot): child processes whose
clock libfaketime puts an hour off, against the real Redis."""

import time
from datetime import timedelta

import pytest
import redis
from django.utils import timezone

from tests.processes import run_python, skewed_clock
from tests.queues import tasks as queue_tasks
from tests.queues.rq.support import worker_env

DELAY = 300

ENQUEUE = f"""
import django
django.setup()
from datetime import timedelta
from django.utils import timezone
from tests.queues.tasks import record_marker
record_marker.using(run_after=timezone.now() + timedelta(seconds={DELAY})).enqueue("later")
"""

BURST = """
import django
django.setup()
from tests.queues.rq.support import run_burst
run_burst()
"""


def scheduled_due(url):
    """(the one scheduled job's due time, the server's time now), Unix seconds."""
    connection = redis.Redis.from_url(url)
    ((_, due),) = connection.zrange("rq:scheduled:default", 0, -1, withscores=True)
    seconds, microseconds = connection.time()
    return due, seconds + microseconds / 1e6


@pytest.mark.parametrize("offset", ["-1h", "+1h"])
def test_a_delay_enqueued_on_a_skewed_host_is_a_delay_on_the_servers_clock(rq_url, offset):
    # An hour ahead, the flush was due an hour late; an hour behind, at once (no window at all).
    result = run_python(ENQUEUE, env={**worker_env(rq_url), **skewed_clock(offset)})
    assert result.returncode == 0, result.stderr
    due, now = scheduled_due(rq_url)
    assert now + DELAY - 10 <= due <= now + DELAY + 1


def test_a_worker_whose_clock_runs_ahead_runs_no_job_early(rq_url):
    queue_tasks.record_marker.using(run_after=timezone.now() + timedelta(seconds=60)).enqueue(
        "early"
    )
    result = run_python(BURST, env={**worker_env(rq_url), **skewed_clock("+1h")})
    assert result.returncode == 0, result.stderr
    assert queue_tasks.markers() == []


def test_a_worker_whose_clock_runs_behind_runs_a_due_job(rq_url):
    queue_tasks.record_marker.using(run_after=timezone.now() + timedelta(seconds=1)).enqueue("due")
    time.sleep(2.1)  # due by the server's clock (RQ keeps whole seconds)
    result = run_python(BURST, env={**worker_env(rq_url), **skewed_clock("-1h")})
    assert result.returncode == 0, result.stderr
    assert queue_tasks.markers() == ["due"]
