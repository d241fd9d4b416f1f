"""Prometheus metrics: task counters from the django.tasks signals, SQS receive errors from the real
worker, pending counts read from the real Redis, and the worker's own probe server."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.tasks import default_task_backend, task
from django.test import override_settings
from prometheus_client import REGISTRY
from rq import Queue
from rq.serializers import JSONSerializer

import devservices
from casusult.models import Post
from impressions import flush as flush_module
from impressions import keys
from impressions.exceptions import FlushError
from impressions.flush import flush_pending
from impressions.recorder import record_impressions
from queues.sqs.worker import SQSWorker
from tests.database import other_connection
from tests.factories import make_posts
from tests.processes import PROJECT_DIR
from tests.queues.rq.support import rq_settings

IMMEDIATE = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}


@task
def add(a, b):
    return a + b


@task
def explode():
    raise ValueError("on purpose")


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


@override_settings(TASKS=IMMEDIATE)
def test_tasks_counted_per_backend_and_outcome():
    labels = {"backend": "default", "task": f"{__name__}.add", "outcome": "successful"}
    failed = {"backend": "default", "task": f"{__name__}.explode", "outcome": "failed"}
    before, before_failed = (
        sample("tasks_processed_total", **labels),
        sample("tasks_processed_total", **failed),
    )
    add.enqueue(1, 2)
    add.enqueue(3, 4)
    explode.enqueue()
    assert sample("tasks_processed_total", **labels) == before + 2
    assert sample("tasks_processed_total", **failed) == before_failed + 1
    assert sample("task_duration_seconds_count", backend="default", task=f"{__name__}.add") >= 2
    assert sample("tasks_running", backend="default") == 0


@pytest.mark.django_db
def test_metrics_endpoint_shows_pending_counts_from_redis(client, buffer):
    record_impressions("u:1", [101, 102, 103])
    record_impressions("u:2", [101])
    response = client.get("/metrics", HTTP_HOST="10.0.3.17")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert "impressions_buffer_up 1.0" in text
    assert "impressions_pending 4.0" in text
    # A counter per (viewer shard, post): post 101 twice when u:1 and u:2 hash to two shards.
    entries = 3 if keys.shard_of("u:1") == keys.shard_of("u:2") else 4
    assert f"impressions_pending_entries {entries}.0" in text
    for name, kind in (
        ("impressions_recorded_total", "counter"),
        ("impressions_deduplicated_total", "counter"),
        ("impressions_dropped_total", "counter"),
        ("impressions_flushes_total", "counter"),
        ("impressions_flush_duration_seconds", "histogram"),
        ("tasks_processed_total", "counter"),
        ("sqs_receive_errors_total", "counter"),
    ):
        assert f"# TYPE {name} {kind}" in text


@pytest.mark.django_db(transaction=True)
def test_metrics_show_the_impressions_that_failed_flushes_left_in_redis(client, buffer):
    """A database that takes no writes fails every flush after its snapshot: the counts leave
    `pending` for the failed flush's snapshot, still in Redis. Before, no gauge showed them:
    impressions_pending fell to 0 at each failed flush, and an alarm on it growing (aws.md) never
    fired while they piled up."""
    posts = make_posts(2)
    for viewer in range(3):
        record_impressions(f"u:{viewer}", [post.pk for post in posts])
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SET SESSION default_transaction_read_only = on")
    with pytest.raises(FlushError, match="takes no writes"):
        flush_pending()
    text = client.get("/metrics", HTTP_HOST="10.0.3.17").content.decode()
    assert "impressions_pending 0.0" in text
    assert "impressions_in_snapshots 6.0" in text
    flush_pending()  # a new connection, writable: the snapshot is applied
    text = client.get("/metrics", HTTP_HOST="10.0.3.17").content.decode()
    assert "impressions_in_snapshots 0.0" in text
    assert set(Post.objects.values_list("impressions", flat=True)) == {3}


@pytest.mark.django_db
def test_a_buffer_emptied_since_the_last_flush_is_counted(buffer):
    """The buffer's Redis emptied between two flushes (a restart without persistence, FLUSHDB):
    the next flush counts it, once. Before, nothing did: its pending counts vanished silently."""
    emptied = sample("impressions_buffer_went_back_total", kind="emptied")
    post = make_posts(1)[0]
    record_impressions("u:1", [post.pk])
    flush_pending()
    record_impressions("u:2", [post.pk])
    buffer.flushdb()
    flush_pending()
    flush_pending()
    assert sample("impressions_buffer_went_back_total", kind="emptied") == emptied + 1
    assert Post.objects.get(pk=post.pk).impressions == 1


@pytest.mark.django_db
def test_a_flush_window_that_lapsed_is_counted_by_the_next_one_and_by_its_late_flush(buffer):
    """A window's flush task that no worker ran before its guard lapsed: the next window's
    scheduling counts it (seen_by="schedule"), and so does its flush if it runs at last
    (seen_by="flush"). Before, only a log line could tell, and none did."""
    schedule = sample("impressions_flush_windows_lapsed_total", seen_by="schedule")
    late = sample("impressions_flush_windows_lapsed_total", seen_by="flush")
    post = make_posts(1)[0]
    default_task_backend.clear()
    record_impressions("u:1", [post.pk])
    [first] = default_task_backend.results
    token, _, taken = first.kwargs["window"].partition("@")
    scheduled_at = f"{float(taken) - 400:.3f}"  # that window was scheduled 400 s ago
    buffer.set(keys.scheduled_window_key(), scheduled_at)
    for key in [keys.guard_key(), *(keys.armed_key(shard) for shard in range(16))]:
        buffer.delete(key)  # its guard and the shards' flags lapsed
    record_impressions("u:2", [post.pk])  # schedules the next window
    assert sample("impressions_flush_windows_lapsed_total", seen_by="schedule") == schedule + 1
    first.task.call(**{**first.kwargs, "window": f"{token}@{scheduled_at}"})  # at last
    assert sample("impressions_flush_windows_lapsed_total", seen_by="flush") == late + 1
    record_impressions("u:3", [post.pk])  # within the next window: nothing more
    assert sample("impressions_flush_windows_lapsed_total", seen_by="schedule") == schedule + 1
    assert Post.objects.get(pk=post.pk).impressions == 2


@pytest.mark.django_db
def test_metrics_endpoint_answers_while_redis_is_down(client):
    dead = f"redis://127.0.0.1:{devservices.free_port()}/0"
    with override_settings(IMPRESSIONS_REDIS_URL=dead):
        response = client.get("/metrics")
    assert response.status_code == 200
    assert "impressions_buffer_up 0.0" in response.content.decode()


@pytest.mark.django_db
def test_metrics_endpoint_shows_the_rq_queue_depth_and_failed_jobs(client, dead_redis_url):
    rq_url = settings.RQ_REDIS_URL
    connection = redis.Redis.from_url(rq_url)
    connection.flushdb()
    queue = Queue("default", connection=connection, serializer=JSONSerializer)
    queue.enqueue_call("tests.queues.tasks.record_marker", args=("x",))
    queue.enqueue_call("tests.queues.tasks.record_marker", args=("y",))
    failed = queue.enqueue_call("tests.queues.tasks.record_marker", args=("z",))
    queue.remove(failed)
    queue.failed_job_registry.add(failed, ttl=60)
    rq = rq_settings(rq_url)
    dead = rq_settings(dead_redis_url, alias="down", queue="down")
    tasks = {**rq["TASKS"], **dead["TASKS"]}
    try:
        with override_settings(TASKS=tasks, RQ_QUEUES={**rq["RQ_QUEUES"], **dead["RQ_QUEUES"]}):
            text = client.get("/metrics").content.decode()
    finally:
        connection.flushdb()
    assert 'queue_tasks{backend="default",queue="default",state="queued"} 2.0' in text
    assert 'queue_tasks{backend="default",queue="default",state="failed"} 1.0' in text
    assert 'queue_backend_up{backend="default"} 1.0' in text
    assert 'queue_backend_up{backend="down"} 0.0' in text
    assert "# TYPE tasks_refused_total counter" in text


@pytest.mark.django_db
def test_record_path_counts_recorded_deduplicated_and_dropped(client, buffer):
    make_posts(5)
    recorded, deduplicated = (
        sample("impressions_recorded_total"),
        sample("impressions_deduplicated_total"),
    )
    dropped = sample("impressions_dropped_total")
    assert client.get("/api/timeline/").status_code == 200
    assert client.get("/").status_code == 200  # a reload (HTML) by the same anonymous viewer
    assert sample("impressions_recorded_total") == recorded + 5
    assert sample("impressions_deduplicated_total") == deduplicated + 5
    with override_settings(IMPRESSIONS_REDIS_URL=f"redis://127.0.0.1:{devservices.free_port()}/0"):
        assert client.get("/api/timeline/").status_code == 200
    assert sample("impressions_dropped_total") == dropped + 5
    assert sample("impressions_recorded_total") == recorded + 5


@pytest.mark.django_db
def test_flushes_counted_by_outcome_with_duration(buffer):
    posts = make_posts(3)
    applied = sample("impressions_flushes_total", outcome="applied")
    failed = sample("impressions_flushes_total", outcome="failed")
    flushed = sample("impressions_flushed_total")
    timed = sample("impressions_flush_duration_seconds_count", outcome="applied")
    record_impressions("u:7", [post.pk for post in posts])
    flush_pending()
    assert sample("impressions_flushes_total", outcome="applied") == applied + 1
    assert sample("impressions_flushed_total") == flushed + 3
    assert sample("impressions_flush_duration_seconds_count", outcome="applied") == timed + 1
    dead = f"redis://127.0.0.1:{devservices.free_port()}/0"
    with override_settings(IMPRESSIONS_REDIS_URL=dead), pytest.raises(FlushError):
        flush_pending()
    assert sample("impressions_flushes_total", outcome="failed") == failed + 1


@pytest.mark.django_db
def test_counts_of_deleted_posts_dropped_by_a_flush_are_counted(buffer):
    posts = make_posts(3)
    dropped = sample("impressions_of_deleted_objects_total")
    lost = sample("impressions_dropped_total")
    for viewer in range(2):
        record_impressions(f"u:{viewer}", [post.pk for post in posts])
    posts[0].delete()
    report = flush_pending()
    assert (report.posts_dropped, report.impressions_dropped) == (1, 2)
    assert sample("impressions_of_deleted_objects_total") == dropped + 2  # before: no metric
    assert sample("impressions_dropped_total") == lost  # the record path's losses, not these


@pytest.mark.django_db(transaction=True)
def test_a_flush_failing_after_a_batch_committed_counts_those_impressions_once(buffer, monkeypatch):
    """The database connection dies after a flush's first batch committed: that batch counts in
    impressions_flushed_total with the failed flush, the rest with the next one, each once (before,
    the failed flush counted nothing and the next one skipped what was committed)."""
    posts = make_posts(6)
    for viewer in range(10):
        record_impressions(f"u:{viewer}", [post.pk for post in posts])
    flushed = sample("impressions_flushed_total")
    failed = sample("impressions_flushes_total", outcome="failed")
    connection.ensure_connection()
    batches = []

    def lose_the_connection_after_the_first_batch(name):
        if name == "after-batch" and not batches:
            batches.append(name)
            with other_connection("postgres", autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(%s)", [connection.connection.info.backend_pid]
                )

    monkeypatch.setattr(flush_module, "checkpoint", lose_the_connection_after_the_first_batch)
    with pytest.raises(FlushError):
        flush_pending(batch_size=2)
    monkeypatch.undo()
    committed = sum(Post.objects.values_list("impressions", flat=True))
    assert 0 < committed < 60
    assert sample("impressions_flushes_total", outcome="failed") == failed + 1
    assert sample("impressions_flushed_total") == flushed + committed

    flush_pending()
    assert sum(Post.objects.values_list("impressions", flat=True)) == 60
    assert sample("impressions_flushed_total") == flushed + 60


def test_sqs_receive_errors_counted_by_the_real_worker(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    dead = f"http://127.0.0.1:{devservices.free_port()}"
    tasks = {
        "default": {
            "BACKEND": "queues.sqs.backend.SQSBackend",
            "OPTIONS": {
                "QUEUE_URL": f"{dead}/123456789012/nowhere",
                "CLIENT_PARAMS": {"endpoint_url": dead},
                "WAIT_TIME_SECONDS": 0,
            },
        }
    }
    before = sample("sqs_receive_errors_total", error="EndpointConnectionError")
    with override_settings(TASKS=tasks):
        from django.tasks import task_backends

        worker = SQSWorker(task_backends["default"])
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if sample("sqs_receive_errors_total", error="EndpointConnectionError") > before:
                break
            time.sleep(0.05)
        worker.stop()
        thread.join(10)
    assert sample("sqs_receive_errors_total", error="EndpointConnectionError") == before + 1
    assert not thread.is_alive()


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.sqs
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("concurrency", ["1", "2"])
def test_runworker_health_port(moto_aws_env, moto_sqs_client, concurrency):
    queue = f"health-{uuid.uuid4().hex[:8]}"
    aws = moto_aws_env
    moto_sqs_client.create_queue(QueueName=queue)
    port = devservices.free_port()
    settings_dict = connection.settings_dict
    database_url = (
        f"postgres://{settings_dict['USER']}@{settings_dict['HOST']}:{settings_dict['PORT']}"
        f"/{settings_dict['NAME']}"
    )
    env = {
        **os.environ, **aws,
        "DJANGO_SETTINGS_MODULE": "settings.test", "DATABASE_URL": database_url,
        "QUEUE_BACKEND": "sqs", "SQS_QUEUE_NAME": queue, "SQS_WAIT_TIME_SECONDS": "1",
    }  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-W", "error:This process:DeprecationWarning", "manage.py", "runworker",
         "--health-port", str(port), "--concurrency", concurrency],
        cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        devservices.wait_until(lambda: devservices.is_listening("127.0.0.1", port), 30, "probes")
        assert get(f"{base}/healthz") == (200, '{"status": "ok"}')
        # Polled, as an orchestrator does: the first probe builds the boto3 client, which can
        # take longer than the 1 s readiness budget on a loaded machine.
        deadline = time.monotonic() + 20
        while (answer := get(f"{base}/readyz"))[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        status, body = answer
        assert status == 200, body
        assert json.loads(body)["checks"]["queue"]["detail"] == "SQSBackend"
        status, body = get(f"{base}/metrics")
        assert status == 200
        assert "# TYPE tasks_processed_total counter" in body
        assert get(f"{base}/admin/")[0] == 404  # only the probes, never the site
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        output = worker.communicate(timeout=30)[0].decode()
    assert worker.returncode == 0, output


def test_runworker_health_port_in_use_is_a_clear_error(manage):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", devservices.free_port()))
        busy.listen()
        port = busy.getsockname()[1]
        result = manage(
            "runworker", "--health-port", str(port),
            env={"QUEUE_BACKEND": "rq", "RQ_REDIS_URL": settings.RQ_REDIS_URL},
        )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert f"--health-port {port}" in result.stderr
    assert "Traceback" not in result.stderr
