"""Create (or bring up to date) an SQS queue and its dead-letter queue with a redrive policy.

Idempotent: a queue that exists gets the wanted attributes set again instead of CreateQueue's
"already exists with different attributes" error, so changing --max-receive-count and running it
again converges. The reference for production, and the set-up for local SQS-protocol servers.
"""

import json
from dataclasses import dataclass, field

import boto3
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends
from django.tasks.exceptions import InvalidTaskBackend

from .backend import SQSBackend
from .deadletter import redrive_policy

# Longest retention SQS allows: a message that reached the DLQ is kept 14 days for a person.
DLQ_RETENTION_SECONDS = 14 * 24 * 3600
# The worker long-polls anyway; this makes every other consumer (the console, scripts) do so too.
RECEIVE_WAIT_SECONDS = 20


@dataclass
class QueueState:
    name: str
    url: str
    arn: str
    created: bool
    attributes: dict = field(default_factory=dict)

    def describe(self, role):
        action = "created" if self.created else "exists, attributes set"
        return f"{role} {self.name}: {action}\n  url: {self.url}\n  arn: {self.arn}"


def configured_backend(alias=DEFAULT_TASK_BACKEND_ALIAS):
    """The task backend `alias` when it is an SQSBackend, else None (also when it cannot be
    loaded: another backend whose extra is not installed)."""
    try:
        backend = task_backends[alias]
    except InvalidTaskBackend:
        return None
    return backend if isinstance(backend, SQSBackend) else None


def sqs_client(backend=None):
    """The client of `backend` (configured_backend's), or one from boto3's standard config."""
    return backend.client if backend else boto3.client("sqs")


def max_receive_count_floor(backend=None):
    """The least maxReceiveCount for `backend` (configured_backend's): its MAX_ATTEMPTS (1
    without one).

    A task that kills its worker is received again rather than re-sent as its next attempt: with
    maxReceiveCount >= MAX_ATTEMPTS it gets as many runs as a task that raises.
    """
    return backend.max_attempts if backend else 1


def existing_settings(client, name):
    """What queue `name` already has, where it exists (made by Terraform, say): (the name of its
    redrive policy's DLQ, its maxReceiveCount, its VisibilityTimeout), None for each it lacks.

    sqs_setup keeps these unless told otherwise: repointing the policy to a new `<name>-dlq`
    would strand what the old DLQ holds, out of reach of sqs_redrive and queue_stats.
    """
    try:
        url = client.get_queue_url(QueueName=name)["QueueUrl"]
    except client.exceptions.QueueDoesNotExist:
        return None, None, None
    names = ["RedrivePolicy", "VisibilityTimeout"]
    current = client.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    _, _, dlq_name, receives = redrive_policy(current) or (None, None, None, None)
    visibility = current.get("VisibilityTimeout")
    return dlq_name, receives, int(visibility) if visibility is not None else None


def ensure_queue(client, name, attributes):
    """Create queue `name` with `attributes`, or set them on it when it exists; a QueueState."""
    errors = client.exceptions
    try:
        url = client.get_queue_url(QueueName=name)["QueueUrl"]
    except errors.QueueDoesNotExist:
        url = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        created = True
    else:
        client.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        created = False
    current = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return QueueState(name, url, current["QueueArn"], created, current)


def setup_queues(client, queue_name, *, dlq_name=None, max_receive_count=5, visibility_timeout=60):
    """Ensure the DLQ, then the queue with a redrive policy to it; returns (queue, dlq) states."""
    if queue_name.endswith(".fifo"):
        raise ValueError("FIFO queues are not supported: the SQS backend sends standard messages.")
    if not 1 <= max_receive_count <= 1000:
        raise ValueError("max receive count must be between 1 and 1000 (SQS's limit).")
    if not 0 <= visibility_timeout <= 43200:
        raise ValueError("visibility timeout must be between 0 and 43200 seconds (SQS's limit).")
    dlq_name = dlq_name or f"{queue_name}-dlq"
    if dlq_name == queue_name:
        raise ValueError("the dead-letter queue must be another queue than the queue itself.")
    dlq = ensure_queue(client, dlq_name, {"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)})
    redrive = {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": str(max_receive_count)}
    queue = ensure_queue(
        client,
        queue_name,
        {
            "VisibilityTimeout": str(visibility_timeout),
            "ReceiveMessageWaitTimeSeconds": str(RECEIVE_WAIT_SECONDS),
            "RedrivePolicy": json.dumps(redrive),
        },
    )
    return queue, dlq
