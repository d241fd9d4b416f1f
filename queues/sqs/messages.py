"""The SQS message format: versioned JSON naming the task by its import path, never code."""

import json
import math
from datetime import datetime

from django.utils import timezone

from ..exceptions import MalformedMessage

MESSAGE_VERSION = 1
# SQS refuses DelaySeconds above 15 minutes; later run_after values are re-sent until due.
# Module-level so tests can shorten it.
MAX_DELAY_SECONDS = 900
REQUIRED_FIELDS = {"v": int, "id": str, "task": str, "args": list, "kwargs": dict}
# Added to version 1 by retries; a message without them is a first attempt.
# attempt: the run this message asks for (1, 2, …); worker_ids: the workers of the runs before.


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
            "attempt": 1,
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
    attempt = envelope.setdefault("attempt", 1)
    if type(attempt) is not int or attempt < 1:
        raise MalformedMessage("field 'attempt' is not a whole number of 1 or more")
    workers = envelope.setdefault("worker_ids", [])
    if not isinstance(workers, list) or not all(isinstance(w, str) for w in workers):
        raise MalformedMessage("field 'worker_ids' is not a list of strings")
    # One worker per earlier attempt, so that TaskContext.attempt (their number + 1) is `attempt`.
    envelope["worker_ids"] = (workers + ["unknown"] * attempt)[: attempt - 1]
    return envelope


def next_attempt_body(body, worker_id):
    """The body of `body`'s next attempt: its attempt number + 1, this worker added to worker_ids.

    Everything else is kept as sent (the same id, task, arguments and enqueued_at).
    """
    envelope = decode_message(body)
    following = json.loads(body)
    following["attempt"] = envelope["attempt"] + 1
    following["worker_ids"] = [*envelope["worker_ids"], worker_id]
    return json.dumps(following, separators=(",", ":"))


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
