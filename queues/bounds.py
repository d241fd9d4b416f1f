"""Bounds on what a queue message or job may carry, checked before any of it is used.

Whoever can write to the queue writes the message: its numbers, lists and nesting are checked
against fixed limits first, so that no field can make a worker allocate, recurse or loop without
bound. A message out of bounds is set aside (the SQS dead-letter queue, RQ's failed registry) at
its first receive, with the reason, and never runs.
"""

import json
import re
from datetime import UTC, datetime

from .exceptions import MalformedMessage

# A task's module_path: dotted identifiers, of a sane length.
DOTTED_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
MAX_TASK_PATH_LENGTH = 200
# Job and message ids (ours are uuid4 hex): RQ's own alphabet, so they log as one word.
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
# Runs past MAX_ATTEMPTS: after its last attempt a message or job goes to the DLQ or the failed
# registry, and each `sqs_redrive` or dashboard requeue gives it one more run.
ATTEMPT_MARGIN = 100
# socket.gethostname() (up to 253 characters) with a pid and a suffix.
MAX_WORKER_ID_LENGTH = 300
# A task's args and kwargs as JSON: ids and small values, not data (which belongs in the database).
MAX_ARGUMENT_BYTES = 256 * 1024
# Containers inside args or kwargs; deep nesting only serves to exhaust the interpreter's stack.
MAX_NESTING_DEPTH = 32
# A queue name or a backend alias carried in a message.
MAX_NAME_LENGTH = 200
# An ISO 8601 time with its offset.
MAX_TIME_LENGTH = 64


def sample(value, limit=40):
    """A short, printable hint of `value` for an error message (never its whole repr)."""
    if isinstance(value, bool | float) or value is None:
        return repr(value)
    if isinstance(value, int):
        return repr(value) if abs(value) < 10**limit else "a number of over 40 digits"
    if isinstance(value, str):
        shown = "".join(c if c.isprintable() else "?" for c in value[:limit])
        return repr(shown) + ("…" if len(value) > limit else "")
    return f"a {type(value).__name__}"


def max_attempt(max_attempts):
    """The highest attempt number a message of a backend with `max_attempts` may carry."""
    return max_attempts + ATTEMPT_MARGIN


def check_task_path(path):
    if not isinstance(path, str) or len(path) > MAX_TASK_PATH_LENGTH:
        raise MalformedMessage(
            f"field 'task' is not a string of at most {MAX_TASK_PATH_LENGTH} characters"
        )
    if not DOTTED_PATH.fullmatch(path):
        raise MalformedMessage(f"field 'task' {sample(path)} is not a dotted path")


def check_id(value, name="id"):
    if not isinstance(value, str) or not JOB_ID.fullmatch(value):
        raise MalformedMessage(
            f"field {name!r} {sample(value)} is not 1 to 128 letters, digits, '_' or '-'"
        )


def check_name(value, name):
    """An optional short string (a queue name, a backend alias)."""
    if value is not None and (not isinstance(value, str) or len(value) > MAX_NAME_LENGTH):
        raise MalformedMessage(
            f"field {name!r} is not a string of at most {MAX_NAME_LENGTH} characters"
        )


def check_attempt(attempt, max_attempts):
    """`attempt` is a whole number from 1 to max_attempt(max_attempts)."""
    highest = max_attempt(max_attempts)
    if type(attempt) is not int or not 1 <= attempt <= highest:
        raise MalformedMessage(
            f"field 'attempt' {sample(attempt)} is not a whole number from 1 to {highest}"
            f" (MAX_ATTEMPTS {max_attempts} + {ATTEMPT_MARGIN} redrives or requeues)"
        )


def check_worker_ids(worker_ids, max_attempts):
    """A list of at most max_attempt(max_attempts) worker names, each of a host name's length."""
    highest = max_attempt(max_attempts)
    if not isinstance(worker_ids, list) or len(worker_ids) > highest:
        raise MalformedMessage(f"field 'worker_ids' is not a list of at most {highest} entries")
    if not all(isinstance(w, str) and len(w) <= MAX_WORKER_ID_LENGTH for w in worker_ids):
        raise MalformedMessage(
            f"field 'worker_ids' holds other than strings of at most {MAX_WORKER_ID_LENGTH}"
            " characters"
        )


def nesting_depth_within(value, limit):
    """Whether `value` (JSON data) nests at most `limit` containers deep; never recurses."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return False
        pending.extend((child, depth + 1) for child in children)
    return True


def check_arguments(args, kwargs):
    """args a list, kwargs a dict with string keys, nesting and JSON size within bounds."""
    if not isinstance(args, list | tuple):
        raise MalformedMessage("field 'args' is not a list")
    if not isinstance(kwargs, dict) or not all(isinstance(key, str) for key in kwargs):
        raise MalformedMessage("field 'kwargs' is not an object")
    # The args list itself is one level; kwargs' values sit at the same depth as args' items.
    if not nesting_depth_within([args, kwargs], MAX_NESTING_DEPTH + 1):
        raise MalformedMessage(f"the arguments nest deeper than {MAX_NESTING_DEPTH} levels")
    size = len(json.dumps([args, kwargs], separators=(",", ":")).encode())
    if size > MAX_ARGUMENT_BYTES:
        raise MalformedMessage(
            f"the arguments are {size} bytes of JSON, past the bound of {MAX_ARGUMENT_BYTES}"
        )


def parse_time(value, name):
    """An aware datetime from an ISO 8601 string (None stays None); MalformedMessage otherwise."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TIME_LENGTH:
        raise MalformedMessage(f"field {name!r} is not an ISO 8601 time")
    try:
        moment = datetime.fromisoformat(value)
        offset = moment.utcoffset()
        if offset is not None:
            moment.astimezone(UTC)  # a time at the calendar's edge overflows here, not later
    except (ValueError, OverflowError):
        raise MalformedMessage(f"field {name!r} is not an ISO 8601 time") from None
    if offset is None:
        raise MalformedMessage(f"field {name!r} has no time zone")
    return moment
