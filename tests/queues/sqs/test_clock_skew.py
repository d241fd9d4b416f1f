"""A delay SQS held whole is over when the message arrives, whatever the worker's clock says of the
sender's run_after: a child process whose clock libfaketime puts ahead enqueues, against the SQS
server, and a worker with the real clock receives."""

import pytest

from tests.processes import run_python, skewed_clock
from tests.queues import tasks as queue_tasks
from tests.queues.sqs.support import burst_until, worker_env

# The worker runs in this process, and between jobs closes the database connections that are
# unusable (close_old_connections): after a database test of the same process left its
# connection open, that asks the database, which pytest-django refuses to a test without this.
pytestmark = pytest.mark.django_db

ENQUEUE = """
import django
django.setup()
from datetime import timedelta
from django.utils import timezone
from tests.queues.tasks import record_marker
record_marker.using(run_after=timezone.now() + timedelta(seconds=1)).enqueue("{name}")
"""


@pytest.mark.parametrize("offset", ["+1h", "+5m"])
def test_a_delay_from_a_host_whose_clock_runs_ahead_ends_when_sqs_delivers(sqs, offset):
    # The worker took run_after for an hour away and sent the message back with 15 minutes' delay
    # (on a web host 5 minutes ahead, the flush 5 minutes late: past its schedule guard).
    env = {**worker_env(sqs), **skewed_clock(offset)}
    result = run_python(ENQUEUE.format(name=offset), env=env)
    assert result.returncode == 0, result.stderr
    assert burst_until(lambda: queue_tasks.markers() == [offset], attempts=3)
