"""The SQS message format: versioned JSON naming a registered task by its path, never code."""

import json
import math

from django.utils import timezone

from ..bounds import (
    check_arguments,
    check_attempt,
    check_id,
    check_name,
    check_task_path,
    check_worker_ids,
    parse_time,
    sample,
)
from ..exceptions import MalformedMessage
from ..times import aware, project_time

MESSAGE_VERSION = 1
# SQS refuses DelaySeconds above 15 minutes; later run_after values are re-sent until due.
# Module-level so tests can shorten it.
MAX_DELAY_SECONDS = 900
# SQS's own limit on a message (1 MiB); a longer body is not ours, and is not parsed.
MAX_BODY_CHARACTERS = 1024 * 1024
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
            # Aware times, whatever USE_TZ says: parse_time refuses a time without a zone.
            "run_after": aware(task.run_after).isoformat() if task.run_after else None,
            "enqueued_at": aware(timezone.now()).isoformat(),
            "attempt": 1,
        },
        separators=(",", ":"),
    )


def decode_message(body, max_attempts):
    """Parse and bound-check a message body; raise MalformedMessage saying what is wrong.

    `max_attempts`: the backend's MAX_ATTEMPTS, which bounds `attempt` and `worker_ids`.
    """
    if not isinstance(body, str) or len(body) > MAX_BODY_CHARACTERS:
        raise MalformedMessage(f"body is not text of at most {MAX_BODY_CHARACTERS} characters")
    try:
        envelope = json.loads(body)
    except RecursionError:
        raise MalformedMessage("body nests too deep to parse") from None
    except ValueError as error:
        raise MalformedMessage(f"body is not JSON ({sample(str(error), 80)})") from None
    if not isinstance(envelope, dict):
        raise MalformedMessage("body is not a JSON object")
    if envelope.get("v") != MESSAGE_VERSION:
        raise MalformedMessage(f"unknown message version {sample(envelope.get('v'))}")
    check_id(envelope.get("id"))
    check_task_path(envelope.get("task"))
    check_arguments(envelope.get("args"), envelope.get("kwargs"))
    check_name(envelope.get("queue_name"), "queue_name")
    check_name(envelope.get("backend"), "backend")
    envelope["run_after"] = project_time(parse_time(envelope.get("run_after"), "run_after"))
    enqueued_at = parse_time(envelope.get("enqueued_at"), "enqueued_at")
    envelope["enqueued_at"] = project_time(enqueued_at)
    attempt = envelope.setdefault("attempt", 1)
    check_attempt(attempt, max_attempts)
    workers = envelope.setdefault("worker_ids", [])
    check_worker_ids(workers, max_attempts)
    # One worker per earlier attempt, so that TaskContext.attempt (their number + 1) is `attempt`.
    envelope["worker_ids"] = (workers + ["unknown"] * (attempt - 1))[: attempt - 1]
    return envelope


def next_attempt_body(body, envelope, worker_id):
    """The body of the next attempt of `body` (decoded: `envelope`): its attempt number + 1,
    this worker added to worker_ids.

    Everything else is kept as sent (the same id, task, arguments and enqueued_at).
    """
    following = json.loads(body)
    following["attempt"] = envelope["attempt"] + 1
    following["worker_ids"] = [*envelope["worker_ids"], worker_id]
    return json.dumps(following, separators=(",", ":"))


def remaining_delay(body):
    """DelaySeconds to send a received `body` again unchanged: what is left until its run_after (0
    for a body SQS held its whole delay, held_whole, or that does not parse: the worker that
    receives it sets it aside)."""
    try:
        fields = json.loads(body)
        run_after = parse_time(fields.get("run_after"), "run_after")
        if held_whole(run_after, parse_time(fields.get("enqueued_at"), "enqueued_at")):
            return 0
        return delay_seconds(run_after)
    except (ValueError, TypeError, AttributeError, RecursionError):  # MalformedMessage too
        return 0


def held_whole(run_after, enqueued_at):
    """Whether SQS held the message for its whole delay: its run_after at most MAX_DELAY_SECONDS
    after its enqueued_at (both of the sender's clock), so that it was sent with all of it
    (delay_seconds). Such a message is due as it arrives, whatever the receiving host's clock
    says of run_after: a sender's clock ahead of it made the worker send it back to wait again."""
    if run_after is None or enqueued_at is None:
        return run_after is None
    return (aware(run_after) - aware(enqueued_at)).total_seconds() <= MAX_DELAY_SECONDS


def delay_seconds(run_after, now=None):
    """DelaySeconds for a message due at `run_after`: 0..MAX_DELAY_SECONDS."""
    if run_after is None:
        return 0
    remaining = (aware(run_after) - aware(now or timezone.now())).total_seconds()
    return max(0, min(MAX_DELAY_SECONDS, math.ceil(remaining)))
