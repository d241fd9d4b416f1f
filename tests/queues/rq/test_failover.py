"""A failover of the RQ Redis behind a stable endpoint, seen from a web process that enqueues:
its pooled connections stay on the old primary, now a replica that answers every write READONLY."""

from datetime import timedelta

import pytest
from django.tasks import TaskResultStatus, task_backends
from django.test import override_settings
from django.utils import timezone
from rq import Queue

from queues.rq import jobs
from tests.failover import FailoverPair
from tests.queues import tasks as queue_tasks

from .support import rq_settings


@pytest.fixture
def failover():
    pair = FailoverPair()
    try:
        with override_settings(**rq_settings(pair.url)):
            yield pair
    finally:
        pair.stop()


def test_after_a_failover_enqueueing_reaches_the_new_primary(failover):
    before = queue_tasks.record_marker.enqueue("before")  # a pooled connection to the old primary
    scheduled = queue_tasks.record_marker.using(
        run_after=timezone.now() + timedelta(hours=1)
    ).enqueue("later")

    failover.fail_over()

    after = [queue_tasks.record_marker.enqueue(f"after {n}") for n in range(3)]
    queue = Queue("default", connection=failover.primary_on(0), serializer=jobs.SERIALIZER)
    assert queue.job_ids == [before.id, *(result.id for result in after)]
    backend = task_backends["default"]
    assert backend.get_result(after[0].id).status == TaskResultStatus.READY
    assert backend.get_result(scheduled.id).status == TaskResultStatus.READY
    assert [row.counts["queued"] for row in backend.stats()] == [4]
