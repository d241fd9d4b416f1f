"""Amazon SQS through boto3 as a django.tasks backend: versioned JSON messages, never code.

Standard boto3 configuration applies (AWS_ENDPOINT_URL_SQS, AWS_DEFAULT_REGION, the credentials
chain); OPTIONS add SESSION_PARAMS/CLIENT_PARAMS for anything else.
"""

import json
import math
import threading
import uuid
from datetime import datetime

from django.tasks.signals import task_enqueued
from django.utils import timezone

from ..exceptions import MalformedMessage
from ..execution import new_result
from .base import QueueBackend, import_dependency

MESSAGE_VERSION = 1
# SQS refuses DelaySeconds above 15 minutes; later run_after values are re-sent until due.
# Module-level so tests can shorten it.
MAX_DELAY_SECONDS = 900
REQUIRED_FIELDS = {"v": int, "id": str, "task": str, "args": list, "kwargs": dict}


def encode_message(result, task):
    """The message body for one TaskResult: only data, the task named by its import path."""
    return json.dumps(
        {
            "v": MESSAGE_VERSION,
            "id": result.id,
            "task": task.module_path,
            "args": result.args,
            "kwargs": result.kwargs,
            "queue_name": task.queue_name,
            "backend": result.backend,
            "run_after": task.run_after.isoformat() if task.run_after else None,
            "enqueued_at": timezone.now().isoformat(),
        },
        separators=(",", ":"),
    )


def decode_message(body):
    """Parse and validate a message body; raise MalformedMessage saying what is wrong."""
    try:
        envelope = json.loads(body)
    except (TypeError, ValueError) as error:
        raise MalformedMessage(f"body is not JSON ({error})") from None
    if not isinstance(envelope, dict):
        raise MalformedMessage("body is not a JSON object")
    if envelope.get("v") != MESSAGE_VERSION:
        raise MalformedMessage(f"unknown message version {envelope.get('v')!r}")
    for name, kind in REQUIRED_FIELDS.items():
        if not isinstance(envelope.get(name), kind):
            raise MalformedMessage(f"field {name!r} is missing or not a {kind.__name__}")
    envelope["run_after"] = parse_time(envelope.get("run_after"), "run_after")
    envelope["enqueued_at"] = parse_time(envelope.get("enqueued_at"), "enqueued_at")
    return envelope


def parse_time(value, name):
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise MalformedMessage(f"field {name!r} is not an ISO 8601 time") from None
    if timezone.is_naive(moment):
        raise MalformedMessage(f"field {name!r} has no time zone")
    return moment


def delay_seconds(run_after, now=None):
    """DelaySeconds for a message due at `run_after`: 0..MAX_DELAY_SECONDS."""
    if run_after is None:
        return 0
    remaining = (run_after - (now or timezone.now())).total_seconds()
    return max(0, min(MAX_DELAY_SECONDS, math.ceil(remaining)))


class SQSBackend(QueueBackend):
    """Tasks as SQS messages; `runworker` long-polls, runs them, and deletes them on success."""

    # run_after: DelaySeconds up to 15 minutes, re-sent by the worker until due beyond that.
    supports_defer = True

    option_defaults = {
        "QUEUE_URL": None,
        "QUEUE_NAME": None,
        "SESSION_PARAMS": {},
        "CLIENT_PARAMS": {},
        "WAIT_TIME_SECONDS": 20,  # long poll; SQS allows 0..20
        "MAX_MESSAGES": 10,  # per receive; SQS allows 1..10
        "VISIBILITY_TIMEOUT": 60,  # what the heartbeat keeps a running task's message hidden for
        "JOB_TIMEOUT": 600,  # a task running longer is stopped (TaskTimeout) and left for redelivery
    }

    def __init__(self, alias, params):
        super().__init__(alias, params)
        if not (self.options["QUEUE_URL"] or self.options["QUEUE_NAME"]):
            raise self.option_error(
                "QUEUE_URL or QUEUE_NAME is required (from SQS_QUEUE_URL or SQS_QUEUE_NAME)."
            )
        if not 0 <= self.options["WAIT_TIME_SECONDS"] <= 20:
            raise self.option_error("WAIT_TIME_SECONDS must be between 0 and 20.")
        if not 1 <= self.options["MAX_MESSAGES"] <= 10:
            raise self.option_error("MAX_MESSAGES must be between 1 and 10.")
        if not 1 <= self.options["VISIBILITY_TIMEOUT"] <= 43200:
            raise self.option_error("VISIBILITY_TIMEOUT must be between 1 and 43200 seconds.")
        if not 1 <= self.options["JOB_TIMEOUT"] <= 43200:  # SQS hides a message 12 h at most
            raise self.option_error("JOB_TIMEOUT must be between 1 and 43200 seconds.")
        self._client = None
        self._poll_client = None
        self._queue_url = self.options["QUEUE_URL"]
        self._lock = threading.Lock()

    @property
    def client(self):
        """The boto3 SQS client for short calls (send, delete, visibility), built once.

        Bounded timeouts: a web request enqueues through it, and botocore's defaults (60 s reads,
        retried) would hold a timeline page for minutes when SQS does not answer.
        """
        with self._lock:
            if self._client is None:
                self._client = self._build_client(connect_timeout=1, read_timeout=3)
        return self._client

    @property
    def poll_client(self):
        """A client whose read timeout outlasts the long poll (WAIT_TIME_SECONDS)."""
        with self._lock:
            if self._poll_client is None:
                self._poll_client = self._build_client(
                    connect_timeout=2, read_timeout=self.options["WAIT_TIME_SECONDS"] + 10
                )
        return self._poll_client

    def _build_client(self, connect_timeout, read_timeout):
        boto3 = import_dependency("boto3", "boto3")
        from botocore.config import Config

        params = dict(self.options["CLIENT_PARAMS"])
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": 2, "mode": "standard"},
        )
        if params.get("config") is not None:
            config = config.merge(params["config"])  # the OPTIONS' own config wins
        params["config"] = config
        session = boto3.session.Session(**self.options["SESSION_PARAMS"])
        return session.client("sqs", **params)

    @property
    def queue_url(self):
        if self._queue_url is None:
            answer = self.client.get_queue_url(QueueName=self.options["QUEUE_NAME"])
            self._queue_url = answer["QueueUrl"]
        return self._queue_url

    def send(self, body, delay):
        return self.client.send_message(
            QueueUrl=self.queue_url, MessageBody=body, DelaySeconds=delay
        )

    def enqueue(self, task, args, kwargs):
        self.validate_task(task)
        result = new_result(task, uuid.uuid4().hex, args, kwargs, self.alias)
        self.send(encode_message(result, task), delay_seconds(task.run_after))
        object.__setattr__(result, "enqueued_at", timezone.now())
        task_enqueued.send(type(self), task_result=result)
        return result

    def make_worker(self, *, queues=None, burst=False, max_jobs=None):
        from ..workers.sqs import SQSWorker

        if queues:
            # Every Django queue name of this backend shares one SQS queue: no way to pick some.
            raise self.option_error(
                "--queue applies to RQ only; configure another TASKS alias for another SQS queue."
            )
        return SQSWorker(self, burst=burst, max_jobs=max_jobs)
