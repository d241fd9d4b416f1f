"""Amazon SQS through boto3 as a django.tasks backend: versioned JSON messages, never code.

Standard boto3 configuration applies (AWS_ENDPOINT_URL_SQS, AWS_DEFAULT_REGION, the credentials
chain), except that an AWS QUEUE_URL's own region wins; OPTIONS add SESSION_PARAMS/CLIENT_PARAMS for
anything else.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.core.checks import CheckMessage
from django.tasks import Task, TaskResult
from django.tasks.exceptions import InvalidTask
from django.tasks.signals import task_enqueued
from django.utils import timezone

from ..base import QueueBackend, QueueStats, Rule, whole_number
from ..execution import new_result
from ..liveness import STALL_GRACE
from .checks import redrive_warnings
from .deadletter import dead_letter_queue
from .messages import delay_seconds, encode_message

# GetQueueAttributes names of the message counts queue_stats shows, by state.
COUNT_ATTRIBUTES = {
    "visible": "ApproximateNumberOfMessages",
    "in_flight": "ApproximateNumberOfMessagesNotVisible",
    "delayed": "ApproximateNumberOfMessagesDelayed",
}


# Seconds SQS keeps a message hidden at most (VisibilityTimeout): 12 h from its receive, whatever
# ChangeMessageVisibility asks later.
MAX_HIDDEN = 43200
# The longest JOB_TIMEOUT: the worker keeps a running task's message hidden until JOB_TIMEOUT and
# the stall grace have passed, which must fit in those 12 h; 2 minutes are left for the wait
# behind the other tasks of its receive and for recording a timed-out attempt. Longer, and a
# long task's message would be received again while it runs: the task would run twice.
MAX_JOB_TIMEOUT = MAX_HIDDEN - STALL_GRACE - 120

# This process's boto3 clients, by what they are built from (SQSBackend._shared_client); the most
# recent KEPT_CLIENTS (a process uses one or two; a test run builds many).
_clients: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_clients_lock = threading.Lock()
_clients_pid = os.getpid()  # the process _clients were built in
KEPT_CLIENTS = 8


def _forget_clients_after_fork() -> None:
    """In a process forked since _clients were built, drop them: it builds its own. Asked at each
    use (SQSBackend._shared_client), not by an os.register_at_fork hook, which uWSGI's fork from C
    never runs (unless started with --py-call-uwsgi-fork-hooks); the lock is renewed, in case
    another thread of the parent held it (building a client) at the fork."""
    global _clients_lock, _clients_pid
    if _clients_pid == os.getpid():
        return
    _clients.clear()
    _clients_lock = threading.Lock()
    _clients_pid = os.getpid()


def queue_name_from_url(url: str) -> str:
    """The queue name at the end of an SQS queue URL (https://…/123456789012/name)."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def queue_owner_from_url(url: str | None) -> str | None:
    """The AWS account of a queue URL (https://…/<account>/<name>), or None: GetQueueUrl asks
    the caller's own account unless told another, so a queue shared across accounts needs it."""
    parts = urlsplit(url).path.strip("/").split("/") if isinstance(url, str) else []
    return parts[0] if len(parts) == 2 and re.fullmatch(r"\d{12}", parts[0]) else None


# The region in the host of an AWS queue URL: sqs.<region>.amazonaws.com (also -fips, VPC
# endpoints, .amazonaws.com.cn, the dual-stack api.aws) and the legacy <region>.queue.amazonaws.com.
_REGION = r"([a-z]{2}(?:-[a-z]+)+-\d+)"
_QUEUE_HOSTS = (
    re.compile(
        rf"(?:^|\.)sqs(?:-fips)?\.{_REGION}\.(?:vpce\.)?(?:amazonaws\.com(?:\.cn)?|api\.aws)$"
    ),
    re.compile(rf"^{_REGION}\.queue\.amazonaws\.com(?:\.cn)?$"),
)


def region_from_queue_url(url: str | None) -> str | None:
    """The AWS region an SQS queue URL names in its host, or None (a local server's URL).

    SQS answers a call for another region's queue with NonExistentQueue: the client must be in the
    queue's region, whatever AWS_DEFAULT_REGION says (botocore sends every call, QueueUrl in its
    body, to the client's own regional endpoint).
    """
    try:
        host = (urlsplit(url).hostname or "").rstrip(".") if isinstance(url, str) else ""
    except ValueError:  # not a URL (is_queue_url refuses it)
        return None
    if host == "queue.amazonaws.com":
        return "us-east-1"
    for pattern in _QUEUE_HOSTS:
        if found := pattern.search(host):
            return found.group(1)
    return None


# A queue name SQS accepts: 1 to 80 letters, digits, - and _ (a FIFO queue's ends in .fifo,
# refused on its own by _option_problems).
QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}|[A-Za-z0-9_-]{1,75}\.fifo")
QUEUE_URL_FORM = (
    "https://sqs.<region>.amazonaws.com/<account>/<name>, as `manage.py sqs_setup` prints it (a"
    " local SQS-protocol server's, moto or ElasticMQ: http://127.0.0.1:<port>/<account>/<name>)"
)


def is_queue_name(value: Any) -> bool:
    """An OPTIONS rule: None, or a queue name SQS accepts."""
    return value is None or (isinstance(value, str) and bool(QUEUE_NAME.fullmatch(value)))


def is_queue_url(value: Any) -> bool:
    """An OPTIONS rule: None, or an http(s) URL whose path ends in a queue name, without a query
    or fragment; an AWS host's path is /<12-digit account>/<name>. An ARN, a bare name or a URL
    without its scheme passed boto3's own validation and failed at the first call, far from the
    setting; a query (a presigned URL's signature) became part of the queue's name, printed by
    the checks, the dashboard and /metrics."""
    if value is None:
        return True
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:  # an unclosed [ of an IPv6 host
        return False
    segments = parts.path.strip("/").split("/")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        return False
    if not QUEUE_NAME.fullmatch(segments[-1]):
        return False
    if region_from_queue_url(value):  # an AWS host (queue.amazonaws.com: us-east-1)
        return len(segments) == 2 and bool(re.fullmatch(r"\d{12}", segments[0]))
    return True


def queue_endpoint(queue_url: str | None, endpoint_url: str) -> str | None:
    """The origin of `queue_url` when boto3 would send its calls to `endpoint_url`, AWS's public
    endpoint, though the queue is behind a VPC endpoint or on another server (moto, ElasticMQ);
    else None. boto3, unlike the other AWS SDKs, never reads the host of a QueueUrl; an endpoint
    configured for the client (CLIENT_PARAMS, AWS_ENDPOINT_URL_SQS) is left alone."""
    queue = urlsplit(queue_url) if isinstance(queue_url, str) else None
    if not (queue and queue.scheme in ("http", "https") and queue.hostname):
        return None
    public = region_from_queue_url(endpoint_url) and ".vpce." not in endpoint_url
    if not public or (region_from_queue_url(queue_url) and ".vpce." not in queue.hostname):
        return None
    return f"{queue.scheme}://{queue.netloc}"


def error_code(error: BaseException) -> str:
    """The code SQS answered a refused call with (botocore's ClientError), "" for other errors."""
    return str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))


def error_text(error: ClientError) -> str:
    """What SQS said, without botocore's "An error occurred (…) when calling …" wrapping."""
    return str(error.response.get("Error", {}).get("Message") or error)


def too_long(error: ClientError) -> bool:
    """Whether SendMessage was refused for the message's size (the queue's MaximumMessageSize)."""
    return "InvalidParameterValue" in error_code(error) and "shorter than" in error_text(error)


class SQSBackend(QueueBackend):
    """Tasks as SQS messages; `runworker` long-polls, runs them, and deletes them on success."""

    # run_after: DelaySeconds up to 15 minutes, re-sent by the worker until due beyond that.
    supports_defer = True
    # `async def` tasks: the worker runs the coroutine in an event loop of its own (as Django's
    # Task.call does), and stops it at an await on a timeout (queues.execution.AsyncCall).
    supports_async_task = True

    worker_class: str | None = "queues.sqs.worker.SQSWorker"
    unreachable_errors: tuple[type[Exception], ...] = (BotoCoreError, ClientError)
    option_defaults: dict[str, Any] = {
        **QueueBackend.option_defaults,
        "QUEUE_URL": None,
        "QUEUE_NAME": None,
        "SESSION_PARAMS": {},
        "CLIENT_PARAMS": {},
        "WAIT_TIME_SECONDS": 20,  # long poll; SQS allows 0..20
        "MAX_MESSAGES": 10,  # per receive; SQS allows 1..10
        # What the heartbeat keeps held messages hidden for; None: the queue's VisibilityTimeout.
        "VISIBILITY_TIMEOUT": None,
        "JOB_TIMEOUT": 600,  # a task running longer is stopped (TaskTimeout): a failed attempt
    }

    option_rules: dict[str, Rule] = {
        **QueueBackend.option_rules,
        "QUEUE_URL": (is_queue_url, f"an SQS queue URL: {QUEUE_URL_FORM}"),
        "QUEUE_NAME": (
            is_queue_name,
            "an SQS queue name: 1 to 80 letters, digits, - and _ (a URL goes in QUEUE_URL)",
        ),
        "SESSION_PARAMS": (lambda v: isinstance(v, dict), "a dict of boto3 Session arguments"),
        "CLIENT_PARAMS": (lambda v: isinstance(v, dict), "a dict of boto3 client arguments"),
        "WAIT_TIME_SECONDS": (whole_number(0, 20), "a whole number of seconds from 0 to 20"),
        "MAX_MESSAGES": (whole_number(1, 10), "a whole number from 1 to 10"),
        "VISIBILITY_TIMEOUT": (
            lambda v: v is None or whole_number(1, MAX_HIDDEN)(v),
            f"a whole number of seconds from 1 to {MAX_HIDDEN}, or None for the queue's own",
        ),
        "JOB_TIMEOUT": (
            whole_number(1, MAX_JOB_TIMEOUT),
            f"a whole number of seconds from 1 to {MAX_JOB_TIMEOUT}: SQS keeps a received message"
            f" hidden 12 h ({MAX_HIDDEN} s) at most, and the worker keeps a running task's message"
            f" hidden for JOB_TIMEOUT + {STALL_GRACE} s; longer, and a long task would run twice",
        ),
    }

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self._client: Any = None  # boto3's SQS client (boto3 has no types of its own)
        self._poll_client: Any = None
        self._clients_pid: int | None = None  # the process the two above were taken in
        self._queue_url: str | None = self.options["QUEUE_URL"]

    @property
    def client(self) -> Any:
        """The boto3 SQS client for short calls (send, delete, visibility), one per process.

        Bounded timeouts: a web request enqueues through it, and botocore's defaults (60 s reads,
        retried) would hold a timeline page for minutes when SQS does not answer.
        """
        self._forget_clients_of_another_process()
        if self._client is None:
            self._client = self._shared_client(connect_timeout=1, read_timeout=3)
        return self._client

    @property
    def poll_client(self) -> Any:
        """A client whose read timeout outlasts the long poll (WAIT_TIME_SECONDS)."""
        self._forget_clients_of_another_process()
        if self._poll_client is None:
            self._poll_client = self._shared_client(
                connect_timeout=2, read_timeout=self.options["WAIT_TIME_SECONDS"] + 10
            )
        return self._poll_client

    def _forget_clients_of_another_process(self) -> None:
        """Drop clients this backend took before a fork (gunicorn --preload builds them in its
        master, prepare_probes): a child would use the parent's, its pooled connections too."""
        if self._clients_pid != os.getpid():
            self._client = self._poll_client = None
            self._clients_pid = os.getpid()

    def _shared_client(self, connect_timeout: float, read_timeout: float) -> Any:
        """The client built from these options, timeouts and AWS_* variables in this process.

        Django builds a backend per thread (task_backends is thread-local), and each built its
        own client: 0.3 to 1 s cold (botocore loads the service model, resolves the
        credentials) in the first call of every request thread and /readyz probe thread. boto3's
        clients are thread-safe: built once here, shared by the threads (not across a fork: _forget_clients_after_fork).
        """
        _forget_clients_after_fork()
        key = (connect_timeout, read_timeout, self._client_digest())
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = self._build_client(connect_timeout, read_timeout)
                while len(_clients) > KEPT_CLIENTS:
                    _clients.popitem(last=False)
            else:
                _clients.move_to_end(key)
        return client

    def _client_digest(self) -> str:
        """A digest of what the client is built from besides its timeouts: these options and the
        AWS_* variables. Only the digest is kept: the secrets (AWS_SECRET_ACCESS_KEY, a
        SESSION_PARAMS key) must not sit in a local of _shared_client's frame, which an error
        report of a failed build (Django's debug page, an error tracker's local variables) shows."""
        options = [self.options[key] for key in ("QUEUE_URL", "SESSION_PARAMS", "CLIENT_PARAMS")]
        environment = sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))
        return hashlib.sha256(repr((options, environment)).encode()).hexdigest()

    def warm_up(self) -> None:
        """Build the client ping() uses, without calling SQS: a cold boto3 client takes 0.3 to 1 s
        (botocore loads the service model and resolves the credentials), which a process's first
        /readyz would otherwise spend inside its READINESS_TIMEOUT."""
        self.client  # noqa: B018 (the property builds it)

    def _option_problems(self, given: dict[str, Any]) -> list[tuple[str, str, str]]:
        problems = super()._option_problems(given)
        where = f"TASKS[{self.alias!r}]['OPTIONS']"
        if not (given.get("QUEUE_URL") or given.get("QUEUE_NAME")):
            problems.append(
                ("queues.E005", f"{where} names no queue.", "Set QUEUE_URL or QUEUE_NAME.")
            )
        for key in ("QUEUE_URL", "QUEUE_NAME"):
            value = given.get(key)
            if isinstance(value, str) and value.rstrip("/").endswith(".fifo"):
                problems.append(
                    (
                        "queues.E005",
                        f"{where}: {key}={value!r} is a FIFO queue, which the SQS backend does not"
                        " support: a FIFO queue refuses a message's own DelaySeconds (run_after,"
                        " retry delays) and wants a MessageGroupId on every message, so every"
                        " enqueue would fail.",
                        "Use a standard queue (a name without .fifo); `manage.py sqs_setup` makes one.",
                    )
                )
        region = region_from_queue_url(given.get("QUEUE_URL"))
        for key in ("CLIENT_PARAMS", "SESSION_PARAMS"):
            params = given.get(key)
            chosen = params.get("region_name") if isinstance(params, dict) else None
            if region and chosen and chosen != region:
                problems.append(
                    (
                        "queues.E005",
                        f"{where}: {key}['region_name']={chosen!r}, but QUEUE_URL is a queue in"
                        f" {region}: SQS would answer every call NonExistentQueue.",
                        "Drop region_name (the backend takes the region from QUEUE_URL), or fix"
                        " QUEUE_URL.",
                    )
                )
        return problems

    def _build_client(self, connect_timeout: float, read_timeout: float) -> Any:
        params = dict(self.options["CLIENT_PARAMS"])
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": 2, "mode": "standard"},
        )
        if params.get("config") is not None:
            config = config.merge(params["config"])  # the OPTIONS' own config wins
        params["config"] = config
        region = region_from_queue_url(self.options["QUEUE_URL"])
        if region and not self.options["SESSION_PARAMS"].get("region_name"):
            params.setdefault("region_name", region)  # the queue's, not AWS_DEFAULT_REGION
        session = boto3.session.Session(**self.options["SESSION_PARAMS"])
        client = session.client("sqs", **params)
        if params.get("endpoint_url"):
            return client  # configured for the client: it wins, even AWS's public one
        endpoint = queue_endpoint(self.options["QUEUE_URL"], client.meta.endpoint_url)
        return session.client("sqs", **params, endpoint_url=endpoint) if endpoint else client

    @property
    def queue_name(self) -> str:
        """QUEUE_NAME, or the last part of QUEUE_URL."""
        return self.options["QUEUE_NAME"] or queue_name_from_url(self.options["QUEUE_URL"] or "")

    @property
    def queue_url(self) -> str:
        """QUEUE_URL, or the URL SQS answers for QUEUE_NAME (asked once)."""
        if self._queue_url is None:
            answer = self.client.get_queue_url(QueueName=self.queue_name)
            self._queue_url = str(answer["QueueUrl"])
        return self._queue_url

    def check(self, *, deploy: bool = False, **kwargs: Any) -> list[CheckMessage]:
        return redrive_warnings(self) if deploy else super().check(**kwargs)

    def queue_attributes(self, names: list[str]) -> dict[str, str]:
        """The queue's attributes `names` (GetQueueAttributes), as strings."""
        answer = self.client.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=names)
        attributes: dict[str, str] = answer.get("Attributes", {})
        return attributes

    def dead_letter_queue(self, attributes: dict[str, str] | None = None) -> Any:
        """The DLQ of the queue's RedrivePolicy (queues.sqs.deadletter), or None."""
        if attributes is None:
            attributes = self.queue_attributes(["RedrivePolicy"])
        return dead_letter_queue(self.client, attributes)

    def stats(self) -> list[QueueStats]:
        """Messages visible, in flight and delayed, and in the DLQ (None: the queue has none)."""
        attributes = self.queue_attributes([*COUNT_ATTRIBUTES.values(), "RedrivePolicy"])
        counts: dict[str, int | None] = {
            state: int(attributes[name]) for state, name in COUNT_ATTRIBUTES.items()
        }
        dlq = self.dead_letter_queue(attributes)
        counts["dead_letter"] = None
        if dlq is not None:
            answer = self.client.get_queue_attributes(
                QueueUrl=dlq.url, AttributeNames=list(COUNT_ATTRIBUTES.values())
            )
            counts["dead_letter"] = sum(int(value) for value in answer["Attributes"].values())
        return [QueueStats(self.alias, self.queue_name, counts)]

    def ping(self) -> None:
        """Raise unless SQS answers GetQueueUrl for the queue (allowed to the web and worker roles
        alike, see the README's IAM policies)."""
        owner = queue_owner_from_url(self.options["QUEUE_URL"])
        self.client.get_queue_url(
            QueueName=self.queue_name, **({"QueueOwnerAWSAccountId": owner} if owner else {})
        )

    def send(self, body: str, delay: int) -> Any:
        """SendMessage of `body` to the queue, delayed `delay` seconds (0 to 900)."""
        return self.client.send_message(
            QueueUrl=self.queue_url, MessageBody=body, DelaySeconds=delay
        )

    def enqueue(
        self, task: Task[Any, Any], args: Sequence[Any], kwargs: dict[str, Any]
    ) -> TaskResult[Any, Any]:
        self.ensure_valid()
        self.validate_task(task)
        self.require_registered(task)
        result: TaskResult[Any, Any] = new_result(task, uuid.uuid4().hex, args, kwargs, self.alias)
        self.bound_arguments(result)
        body = encode_message(result, task)
        try:
            self.send(body, delay_seconds(task.run_after))
        except ClientError as error:
            if not too_long(error):
                raise
            raise InvalidTask(
                f"{task.module_path}: SQS refused the message, {len(body.encode())} bytes:"
                f" {error_text(error)} (the queue's MaximumMessageSize, at most 1 MiB; the"
                " arguments, at most 256 KiB, travel in it)."
            ) from None
        object.__setattr__(result, "enqueued_at", timezone.now())
        task_enqueued.send(type(self), task_result=result)
        return result
