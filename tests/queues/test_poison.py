"""The issue's poison against real `runworker` processes: a message or job with an attempt of
10**13 and a huge worker_ids list is set aside with its reason, and the worker runs on."""

import json
import signal
import time
import zlib

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from queues.bounds import MAX_ARGUMENT_BYTES
from queues.rq import jobs
from tests.processes import start_manage
from tests.queues import tasks as queue_tasks
from tests.queues.rq.support import worker_env as rq_worker_env
from tests.queues.sqs.support import dlq_messages
from tests.queues.sqs.support import worker_env as sqs_worker_env

# Enough worker names to pass for a long history, small enough for SQS's 256 KiB (moto's limit).
HUGE_WORKER_IDS = [f"w{n}" for n in range(40_000)]


def wait_for(predicate, process, within=60):
    """Wait until `predicate()` holds while `process` keeps running; False if it exits first."""
    deadline = time.monotonic() + within
    while not predicate():
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stop(process):
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    return process.returncode, stderr


@pytest.mark.sqs
def test_sqs_poison_goes_to_the_dlq_and_the_worker_runs_on(sqs):
    poison = {
        "v": 1,
        "id": "poison",
        "task": "tests.queues.tasks.record_marker",
        "args": ["poison"],
        "kwargs": {},
        "attempt": 10**13,
        "worker_ids": HUGE_WORKER_IDS,
    }
    for fields in ({}, {"id": "worker-ids", "attempt": 2}):
        sqs.client.send_message(QueueUrl=sqs.url, MessageBody=json.dumps({**poison, **fields}))
    process = start_manage("runworker", env=sqs_worker_env(sqs))
    try:
        assert wait_for(lambda: len(dlq_messages(sqs)) == 2, process)
        queue_tasks.record_marker.enqueue("after")
        assert wait_for(lambda: queue_tasks.markers() == ["after"], process)
        assert process.poll() is None  # still running, still receiving
    finally:
        code, stderr = stop(process)
    assert code == 0, stderr
    reasons = sorted(
        message["MessageAttributes"]["queues.reason"]["StringValue"]
        for message in dlq_messages(sqs)
    )
    assert reasons[0].startswith("malformed: field 'attempt' 10000000000000 is not a whole number")
    assert reasons[1].startswith("malformed: field 'worker_ids' is not a list of at most 103")
    assert "poison" not in queue_tasks.markers()


def plant(connection, job_id, data, **fields):
    """A job hash written straight into Redis, queued on `default`, as an intruder would."""
    connection.hset(
        f"rq:job:{job_id}",
        mapping={"data": data, "origin": "default", "status": "queued", **fields},
    )
    connection.rpush("rq:queue:default", job_id)


def test_rq_poison_goes_to_the_failed_registry_and_the_worker_runs_on(rq_url):
    connection = redis.Redis.from_url(rq_url)
    ours = zlib.compress(
        json.dumps(
            [jobs.TRAMPOLINE, None, ["tests.queues.tasks.record_marker", ["p"], {}], {}]
        ).encode()
    )
    meta = {"backend": "default", "worker_ids": HUGE_WORKER_IDS}
    plant(connection, "huge-worker-ids", ours, meta=json.dumps(meta))
    plant(connection, "retries", ours, retries_left="10000000000000")
    plant(connection, "bad-date", ours, created_at="yesterday")
    plant(connection, "bomb", zlib.compress(b" " * (MAX_ARGUMENT_BYTES * 64)))
    process = start_manage("runworker", env=rq_worker_env(rq_url))
    queue = Queue("default", connection=connection, serializer=JSONSerializer)
    try:
        assert wait_for(lambda: len(queue.failed_job_registry.get_job_ids()) == 4, process)
        queue_tasks.record_marker.enqueue("after")
        assert wait_for(lambda: queue_tasks.markers() == ["after"], process)
        assert process.poll() is None
    finally:
        code, stderr = stop(process)
    assert code == 0, stderr
    refused = [line for line in stderr.splitlines() if "outcome=refused" in line]
    assert len(refused) == 4, stderr
    assert any("'worker_ids' is not a list of at most 103" in line for line in refused)
    assert any("'retries_left' 10000000000000 is not from 0 to 103" in line for line in refused)
    assert any("the job cannot be read: ValueError" in line for line in refused)
    assert any("'data' holds more than" in line for line in refused)
    assert "p" not in queue_tasks.markers()
    # Each refused job reads cleanly now, with the reason, for the dashboard and a person.
    for job_id in ("huge-worker-ids", "retries", "bad-date", "bomb"):
        job = queue.fetch_job(job_id)
        assert job.get_status().value == "failed"
        assert "RefusedJob" in job.latest_result().exc_string
