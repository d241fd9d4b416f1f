"""Helpers for the SQS tests: queues on the SQS-protocol server, counts, in-process workers."""

import json
import logging
import time

from django.tasks import task_backends

from queues.sqs.worker import SQSWorker

SQS_BACKEND = "queues.sqs.backend.SQSBackend"
# Receives before the test queues move a message to their dead-letter queue.
MAX_RECEIVES = 2


def create_queue_with_dlq(client, name, visibility_timeout=1):
    """Queue `name` (visibility 1 s) redriving to `name`-dlq after MAX_RECEIVES; (url, dlq url)."""
    dlq_url = client.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    url = client.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": redrive_policy(client, dlq_url, MAX_RECEIVES),
        },
    )["QueueUrl"]
    return url, dlq_url


def redrive_policy(client, dlq_url, max_receives):
    """A RedrivePolicy moving a message to `dlq_url` after `max_receives` receives."""
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    return json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)})


def dead_letter_after_one_receive(sqs):
    """The `sqs` fixture's queue moves a message to its DLQ at its second receive: one receive
    without a run must not use up a message's receives."""
    policy = redrive_policy(sqs.client, sqs.dlq_url, 1)
    sqs.client.set_queue_attributes(QueueUrl=sqs.url, Attributes={"RedrivePolicy": policy})


def message_count(client, url):
    """Messages in the queue: visible, in flight and delayed."""
    attributes = client.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def in_flight_count(client, url):
    """Messages received and not yet deleted or visible again (held, or a dead worker's)."""
    attributes = client.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessagesNotVisible"])


def visible_count(client, url):
    attributes = client.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def dlq_messages(sqs):
    """The messages in the DLQ (up to 10), left there (visibility 0)."""
    answer = sqs.client.receive_message(
        QueueUrl=sqs.dlq_url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=0,
        MessageAttributeNames=["All"],
    )
    return answer.get("Messages", [])


def dlq_bodies(sqs):
    return sorted(message["Body"] for message in dlq_messages(sqs))


def dlq_reasons(sqs):
    """Why the worker moved each DLQ message there (its queues.reason attribute), sorted."""
    return sorted(
        message["MessageAttributes"]["queues.reason"]["StringValue"]
        for message in dlq_messages(sqs)
    )


def sqs_worker(**options):
    """An SQSWorker of TASKS['default'], in this process."""
    return SQSWorker(task_backends["default"], **options)


def run_burst(long_poll=False):
    """A burst worker of TASKS['default'] in this process, until nothing is left to receive.

    Its receives are short polls (WaitTimeSeconds 0; moto answers with what is visible then):
    the empty receive that ends the burst returns at once, not after WAIT_TIME_SECONDS (1 s in
    the sqs fixture). `long_poll`: the backend's WAIT_TIME_SECONDS, for a burst that must also
    see what becomes visible meanwhile (a delayed message at the end of its delay)."""
    worker = sqs_worker(burst=True)
    if not long_poll:
        worker.options = {**worker.options, "WAIT_TIME_SECONDS": 0}
    return worker.run()


def burst_until(predicate, attempts=8):
    """Long-polling bursts until `predicate()` holds, `attempts` at most (each waits at least
    WAIT_TIME_SECONDS: time for delayed and re-sent messages to become due)."""
    for _ in range(attempts):
        run_burst(long_poll=True)
        if predicate():
            return True
    return predicate()


def worker_env(sqs, **extra):
    """The environment of a `runworker` subprocess on the `sqs` fixture's queue."""
    return {**sqs.env, "QUEUE_BACKEND": "sqs", "SQS_QUEUE_URL": sqs.url,
            "SQS_WAIT_TIME_SECONDS": "1", **extra}  # fmt: skip


def burst_timing_out_twice(caplog):
    """Run a burst (on the main thread, where SIGALRM reaches the task) whose task, with
    JOB_TIMEOUT 1 and two attempts, times out on both within 15 s; returns those two lines."""
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="queues.worker"):
        run_burst()
    assert time.monotonic() - started < 15
    timed_out = [r.getMessage() for r in caplog.records if "outcome=timed-out" in r.getMessage()]
    assert len(timed_out) == 2 and all("JOB_TIMEOUT (1 s)" in line for line in timed_out)
    return timed_out
