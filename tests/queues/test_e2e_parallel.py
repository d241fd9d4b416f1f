"""A window's flush in four parts, run by four worker processes, on RQ and on SQS: one worker is
SIGKILLed in the middle of its part, every part is delivered twice, and the counts are exact.

RQ: the buffer and the queue on the standalone Redis. SQS: the queue on moto over HTTP, the
buffer on the real 3-node Redis Cluster. The workers (`runworker --concurrency 4`) use settings
of their own: batches of 40 counters, and tests.queues.crashflush, which SIGKILLs the first of
them to commit its second batch.
"""

import json
import time
import uuid

import boto3
import pytest
import redis
from django.test import override_settings

from casusult.models import Post
from impressions.models import Flush
from impressions.recorder import record_impressions
from impressions.tasks import flush_impressions_task
from tests.factories import make_posts
from tests.impressions.history_check import history_sums, leaders_mismatches, rollup_mismatches
from tests.processes import PROJECT_DIR
from tests.queues.crashflush.apps import CRASHED_KEY
from tests.queues.rq.support import rq_settings
from tests.queues.sqs.support import SQS_BACKEND, in_flight_count, message_count

from .test_e2e import FLUSH_DELAY, database_url, empty_buffer, wait_for_flush_delay

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.long]

PARTS = 4
WORKER_SETTINGS = """
from settings.test import *
INSTALLED_APPS = [*INSTALLED_APPS, "tests.queues.crashflush"]
IMPRESSIONS_FLUSH_BATCH_SIZE = 40
"""


def worker_env(tmp_path, **extra):
    (tmp_path / "parallel_worker_settings.py").write_text(WORKER_SETTINGS)
    return {
        "DJANGO_SETTINGS_MODULE": "parallel_worker_settings",
        "PYTHONPATH": f"{tmp_path}:{PROJECT_DIR}",
        "DATABASE_URL": database_url(),
        **extra,
    }


def view(posts, viewers, prefix):
    """Every viewer sees every post: the parts all touch every post."""
    for viewer in range(viewers):
        record_impressions(f"{prefix}:{viewer}", [p.id for p in posts])
    return viewers * len(posts)


def run_with_a_kill_then_again(manage, env, before_again=None):
    """The workers, one of them killed mid-flush (they all stop then, loudly), then again (after
    `before_again()`)."""
    killed = manage("runworker", "--burst", "--concurrency", str(PARTS), env={
        **env, "CRASH_FLUSH_AFTER_BATCHES": "2"}, timeout=180)  # fmt: skip
    assert killed.returncode == 1, killed.stderr
    assert "killed by signal 9" in killed.stderr
    if before_again:
        before_again()
    again = manage("runworker", "--burst", "--concurrency", str(PARTS), env=env, timeout=180)
    assert again.returncode == 0, again.stderr


def assert_exact(posts, total):
    ids = [p.id for p in posts]
    stored = dict(Post.objects.filter(id__in=ids).values_list("id", "impressions"))
    assert sum(stored.values()) == total
    assert history_sums(ids) == stored
    assert rollup_mismatches() == []
    assert leaders_mismatches() == []
    assert sum(Flush.objects.values_list("impressions_applied", flat=True)) == total
    assert not Flush.objects.exclude(outcome__in=["applied", "empty"]).exists()
    # The killed part's flush was finished by another delivery of its part, after its marks.
    assert Flush.objects.exclude(recovered_by="").exists()


def none_in_flight(client, queue_url, patience=30):
    """Wait until no message of the queue is in flight (held by a worker, or a dead one's)."""
    deadline = time.monotonic() + patience
    while in_flight_count(client, queue_url):
        assert time.monotonic() < deadline, "messages still in flight after the visibility timeout"
        time.sleep(0.2)


def queue_with_dlq(client, name):
    """A queue (visibility 2 s) whose messages go to a DLQ after 10 receives: a worker killed
    or stopped with a message in hand gives it back, received once more each time."""
    dlq_url = client.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
    redrive = {"deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"], "maxReceiveCount": "10"}
    attributes = {"VisibilityTimeout": "2", "RedrivePolicy": json.dumps(redrive)}
    return client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"], dlq_url


@pytest.fixture
def crash_key(settings):
    client = redis.Redis.from_url(settings.RQ_REDIS_URL)
    client.delete(CRASHED_KEY)
    yield
    client.delete(CRASHED_KEY)


@pytest.fixture
def parts_recorded(monkeypatch):
    """Remember the keyword arguments of each part enqueued (for the duplicate deliveries)."""
    enqueued = []
    original = flush_impressions_task.__class__.enqueue

    def enqueue(task, *args, **kwargs):
        result = original(task, *args, **kwargs)
        if "part" in kwargs and "window" in kwargs:
            enqueued.append(kwargs)
        return result

    monkeypatch.setattr(flush_impressions_task.__class__, "enqueue", enqueue)
    return enqueued


def test_four_parts_on_rq_workers(settings, manage, tmp_path, crash_key, parts_recorded):
    rq_url = settings.RQ_REDIS_URL
    redis.Redis.from_url(rq_url).flushdb()
    empty_buffer(settings.IMPRESSIONS_REDIS_URL)
    posts = make_posts(60)
    with override_settings(
        **rq_settings(rq_url), IMPRESSIONS_FLUSH_DELAY=FLUSH_DELAY, IMPRESSIONS_FLUSH_PARTS=PARTS
    ):
        total = view(posts, 80, "u")
        assert len(parts_recorded) == PARTS
        for kwargs in list(parts_recorded):
            flush_impressions_task.enqueue(**kwargs)  # each part delivered twice
        wait_for_flush_delay()
        env = worker_env(tmp_path, QUEUE_BACKEND="rq", RQ_REDIS_URL=rq_url,
                         REDIS_URL=settings.IMPRESSIONS_REDIS_URL)  # fmt: skip
        run_with_a_kill_then_again(manage, env)
        # RQ does not run a killed worker's job again: the part's left-over waits for the next
        # window's part of those shards.
        total += view(posts, 5, "later")
        wait_for_flush_delay()
        assert manage("runworker", "--burst", env=env, timeout=180).returncode == 0
    assert_exact(posts, total)
    redis.Redis.from_url(rq_url).flushdb()
    empty_buffer(settings.IMPRESSIONS_REDIS_URL)


@pytest.mark.sqs
@pytest.mark.cluster
def test_four_parts_on_sqs_workers(
    settings, redis_cluster_url, aws_env, manage, tmp_path, crash_key, parts_recorded
):
    client = boto3.client("sqs")
    queue_url, dlq_url = queue_with_dlq(client, f"parallel-{uuid.uuid4().hex[:10]}")
    sqs = {"BACKEND": SQS_BACKEND, "OPTIONS": {"QUEUE_URL": queue_url, "WAIT_TIME_SECONDS": 1}}
    empty_buffer(redis_cluster_url)
    posts = make_posts(60)
    with override_settings(
        TASKS={"default": sqs},
        IMPRESSIONS_REDIS_URL=redis_cluster_url,
        IMPRESSIONS_FLUSH_DELAY=FLUSH_DELAY,
        IMPRESSIONS_FLUSH_PARTS=PARTS,
    ):
        total = view(posts, 80, "u")
        assert len(parts_recorded) == PARTS
        for kwargs in list(parts_recorded):
            flush_impressions_task.enqueue(**kwargs)  # each part delivered twice
        wait_for_flush_delay()
        # One message a receive: each worker process takes one part at a time, so the four
        # parts run on four workers at once (with 10, one process may take them all in turn).
        # Short polls (WAIT_TIME_SECONDS 0): the parts are visible before each run starts (the
        # flush delay waited out, none in flight), so each process's burst ends at its first
        # empty receive instead of a long poll later.
        env = worker_env(tmp_path, **aws_env, QUEUE_BACKEND="sqs", SQS_QUEUE_URL=queue_url,
                         SQS_WAIT_TIME_SECONDS="0", SQS_VISIBILITY_TIMEOUT="2",
                         SQS_MAX_MESSAGES="1",
                         REDIS_URL=redis_cluster_url, IMPRESSIONS_REDIS_CLUSTER="auto",
                         # The crash key's Redis (crash_key), not db 14 of the cluster's node.
                         RQ_REDIS_URL=settings.RQ_REDIS_URL)  # fmt: skip
        # SQS delivers the killed worker's message again once it is visible (its visibility
        # timeout, 2 s, after the kill): the part goes on. A burst worker started before that
        # would find nothing to receive and stop.
        run_with_a_kill_then_again(manage, env, lambda: none_in_flight(client, queue_url))
        assert message_count(client, queue_url) == 0
        assert message_count(client, dlq_url) == 0
    assert_exact(posts, total)
    empty_buffer(redis_cluster_url)
