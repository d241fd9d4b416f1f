"""manage.py queue_stats and the stats() behind it, on the real Redis and moto over HTTP."""

import datetime
import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from tests.queues import tasks as queue_tasks
from tests.queues.rq.support import rq_settings, run_burst

# django_db: the in-process RQ worker calls close_old_connections() between jobs.
pytestmark = [pytest.mark.sqs, pytest.mark.django_db]


def queue_stats():
    """(exit code, stdout) of manage.py queue_stats, run in this process."""
    out = io.StringIO()
    try:
        call_command("queue_stats", stdout=out)
    except SystemExit as stop:
        return stop.code, out.getvalue()
    return 0, out.getvalue()


def test_queue_stats_prints_every_backend(rq_url, sqs, settings):
    later = timezone.now() + datetime.timedelta(minutes=5)
    rq = rq_settings(rq_url, MAX_ATTEMPTS=1)
    settings.RQ_QUEUES = rq["RQ_QUEUES"]
    settings.TASKS = {
        **rq["TASKS"],
        "jobs": settings.TASKS["default"],  # the sqs fixture's queue
        "inline": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"},
    }
    # RQ: one failed, one queued, one scheduled.
    queue_tasks.fail_always.enqueue("x")
    run_burst()
    queue_tasks.record_marker.enqueue("waits")
    queue_tasks.record_marker.using(run_after=later).enqueue("later")
    # SQS: one in flight, one visible, one delayed, one in the DLQ.
    on_sqs = queue_tasks.record_marker.using(backend="jobs")
    on_sqs.enqueue("a")
    sqs.client.receive_message(QueueUrl=sqs.url, VisibilityTimeout=60)  # now in flight
    on_sqs.enqueue("b")
    on_sqs.using(run_after=later).enqueue("c")
    sqs.client.send_message(QueueUrl=sqs.dlq_url, MessageBody="dead")

    code, output = queue_stats()

    assert code == 0, output
    assert output.splitlines() == [
        "TASKS['default'] RQBackend",
        "  default: queued=1 scheduled=1 started=0 failed=1",
        "TASKS['jobs'] SQSBackend",
        f"  {sqs.name}: visible=1 in_flight=1 delayed=1 dead_letter=1",
        "TASKS['inline'] ImmediateBackend",
        "  runs tasks in-process: no queue",
    ]


def test_an_unreachable_backend_is_reported_with_exit_code_1(settings, dead_rq_url):
    for name, value in rq_settings(dead_rq_url).items():
        setattr(settings, name, value)
    code, output = queue_stats()
    assert code == 1
    assert "unreachable: ConnectionError" in output


@pytest.mark.parametrize(
    "cluster_url",
    ["redis_cluster_url", pytest.param("redis_tls_cluster_url", marks=pytest.mark.tls)],
)
def test_rq_on_a_cluster_mode_server_is_reported_as_such(settings, cluster_url, request):
    """The TLS cluster too: rediss://localhost:PORT/0?ssl_ca_certs=…, probed live over TLS."""
    for name, value in rq_settings(request.getfixturevalue(cluster_url)).items():
        setattr(settings, name, value)
    code, output = queue_stats()
    assert code == 1
    assert "cluster_enabled:1" in output and "Moved" not in output, output
