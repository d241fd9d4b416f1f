"""The RQ job format: JSON data that calls one fixed trampoline with a task's path and arguments.

Every job of ours calls `run_task(task_path, args, kwargs)` (queues.rq.worker), which looks the
path up in the backend's task registry. Any other job (another callable, callbacks, webhooks, a
pickle, a field out of bounds) is refused by the worker's job class, so a job planted in Redis
never runs, and no field of it can make the worker allocate or recurse without bound.
"""

import datetime
import zlib

from django.tasks import TaskResultStatus
from django.utils import timezone
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from ..bounds import (
    MAX_ARGUMENT_BYTES,
    MAX_NAME_LENGTH,
    check_arguments,
    check_id,
    check_name,
    check_task_path,
    check_worker_ids,
    max_attempt,
    sample,
)
from ..exceptions import MalformedMessage
from ..times import aware, project_time

TRAMPOLINE = "queues.rq.worker.run_task"
SERIALIZER = JSONSerializer
# A whole job hash as read from Redis (our jobs: the arguments, a traceback or two, metadata).
MAX_JOB_BYTES = 4 * 1024 * 1024
# The job's data decompressed: (function name, instance, args, kwargs) as JSON.
MAX_DATA_BYTES = MAX_ARGUMENT_BYTES + 4096
# The last failure's traceback, decompressed (only shown in the dashboard).
MAX_EXC_INFO_BYTES = 1024 * 1024
# What an unreadable job's data becomes (it calls nothing), so that RQ can still describe it.
UNREADABLE_DATA = b"[null, null, [], {}]"

RQ_STATUS = {
    "queued": TaskResultStatus.READY,
    "scheduled": TaskResultStatus.READY,
    "deferred": TaskResultStatus.READY,
    "started": TaskResultStatus.RUNNING,
    "finished": TaskResultStatus.SUCCESSFUL,
    "failed": TaskResultStatus.FAILED,
    "stopped": TaskResultStatus.FAILED,
    "canceled": TaskResultStatus.FAILED,
}


def trampoline_arguments(task, result):
    """The job arguments of `result` (a TaskResult of `task`): what run_task receives."""
    return (task.module_path, result.args, result.kwargs)


def task_time(moment):
    """A time of an RQ job as django.tasks hands it out: aware (RQ keeps UTC; naive, from an older
    RQ, is UTC too), naive in TIME_ZONE when USE_TZ = False, as timezone.now() is then."""
    if moment is not None and timezone.is_naive(moment):
        moment = moment.replace(tzinfo=datetime.UTC)
    return project_time(moment)


def server_now(connection):
    """The RQ Redis's clock (aware, UTC). Deferred jobs are due by it: the hosts that enqueue and
    run them each have their own clock, seconds apart, minutes after a bad boot; the scheduler
    compares a job's due time with this one, so each host's delay is a delay wherever it runs."""
    seconds, microseconds = connection.time()
    return datetime.datetime.fromtimestamp(seconds + microseconds / 1_000_000, datetime.UTC)


def on_server_clock(connection, moment):
    """An aware `moment` of this host's clock (timezone.now()'s) as the same time from now on
    the server's, to the second (RQ keeps whole seconds): unchanged while the two agree."""
    offset = (server_now(connection) - aware(timezone.now())).total_seconds()
    return moment + datetime.timedelta(seconds=round(offset))


def enqueued_at(job):
    """When the task was enqueued: the job's creation. RQ's own enqueued_at is the time the job last
    went onto its queue: none while a run_after waits in the scheduled registry, and later after
    each retry's delay."""
    return task_time(job.created_at)


def attempt_workers(job):
    """The workers of the job's attempts so far (TaskResult.worker_ids), oldest first.

    The worker keeps them in the job's meta, so that `context.attempt` counts RQ's retries.
    """
    return list(job.meta.get("worker_ids", []))


def task_status(job):
    """The django.tasks status of an RQ job."""
    rq_status = job.get_status()
    return RQ_STATUS.get(getattr(rq_status, "value", rq_status), TaskResultStatus.READY)


def refusal(job):
    """Why `job` is not one of ours and must not run, or None."""
    if job.func_name != TRAMPOLINE or job.instance is not None:
        return f"job calls {job.func_name!r}, not {TRAMPOLINE}"
    names = (job._success_callback_name, job._failure_callback_name)
    if any(names) or job._stopped_callback_name:
        return "job carries callbacks"
    if job.webhooks:
        return "job carries webhooks"
    return None


def bounded_decompress(raw, limit, name):
    """`raw` zlib-decompressed into at most `limit` bytes (RQ's fallback: `raw` itself when it is
    not zlib); MalformedMessage rather than inflating a zlib bomb."""
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(raw, limit + 1)
    except zlib.error:
        data = raw
    if len(data) > limit or inflater.unconsumed_tail:
        raise MalformedMessage(f"field {name!r} holds more than {limit} bytes")
    return data


def bounded_fields(raw):
    """(fields, data, exc_info) of a job hash within bounds: the hash less its two compressed
    fields, which come decompressed (RQ would inflate them without a limit)."""
    size = sum(len(key) + len(value) for key, value in raw.items())
    if size > MAX_JOB_BYTES:
        raise MalformedMessage(f"the job is {size} bytes, past the bound of {MAX_JOB_BYTES}")
    fields = {key: value for key, value in raw.items() if key not in (b"data", b"exc_info")}
    if b"data" not in raw:
        raise NoSuchJobError("Unexpected job format: no data")  # what RQ says: not a job
    data = bounded_decompress(raw[b"data"], MAX_DATA_BYTES, "data")
    exc_info = raw.get(b"exc_info")
    if exc_info:
        exc_info = bounded_decompress(exc_info, MAX_EXC_INFO_BYTES, "exc_info").decode()
    return {**fields, b"data": b""}, data, exc_info or None


class BoundedJob(Job):
    """An RQ Job whose restore() reads a job hash within bounds and never fails on its content.

    RQ's own restore() raises on a bad date, status or number, and its worker then quits; it
    inflates `data` without a limit. Here a hash that cannot be read becomes a job with RQ's
    defaults and `unreadable` saying why, for the worker to refuse; get_result() skips it.
    """

    unreadable = None  # why this job's hash could not be read, or None

    def restore(self, raw_data):
        self.unreadable = None
        try:
            fields, data, exc_info = bounded_fields(raw_data)
        except NoSuchJobError:
            raise
        except Exception as error:  # too large, a zlib bomb, MemoryError
            self.unreadable = f"the job cannot be read: {describe(error)}"
            fields, data, exc_info = {b"data": b""}, UNREADABLE_DATA, None
        try:
            super().restore(fields)
        except Exception as error:  # a bad date, status or number, RecursionError
            self.unreadable = self.unreadable or f"the job cannot be read: {describe(error)}"
            super().restore({b"data": b""})
        self.data = data  # decompressed already; RQ's restore got an empty placeholder
        self._exc_info = exc_info
        if not isinstance(self.meta, dict) or "unserialized" in self.meta:
            self.unreadable = self.unreadable or "the job's meta is not a JSON object"
            self.meta = {}


def fetch_bounded(job_id, connection):
    """The BoundedJob `job_id` (NoSuchJobError if there is none)."""
    return BoundedJob.fetch(job_id, connection=connection, serializer=SERIALIZER)


def describe(error):
    """An exception as a short reason: ours whole, another's class and a sample of its text."""
    if isinstance(error, MalformedMessage):
        return str(error)
    return f"{type(error).__name__}: {sample(str(error), 80)}"


def check_job(job, max_attempts):
    """MalformedMessage unless `job`'s arguments and meta are within bounds (the data is read)."""
    check_id(job.id)
    arguments = job.args
    if not isinstance(arguments, list | tuple) or len(arguments) != 3:
        raise MalformedMessage("job arguments are not (task path, args, kwargs)")
    task_path, args, kwargs = arguments
    check_task_path(task_path)
    check_arguments(args, kwargs)
    check_name(job.meta.get("backend"), "backend")
    check_worker_ids(job.meta.get("worker_ids", []), max_attempts)
    highest = max_attempt(max_attempts)
    for name in ("retries_left", "number_of_retries"):
        value = getattr(job, name)
        if value is not None and not 0 <= value <= highest:
            raise MalformedMessage(f"field {name!r} {sample(value)} is not from 0 to {highest}")
    intervals = job.retry_intervals
    if intervals is not None and not (
        isinstance(intervals, list)
        and len(intervals) <= highest
        and all(type(n) is int and 0 <= n <= 86400 for n in intervals)
    ):
        raise MalformedMessage(f"field 'retry_intervals' is not {highest} delays of a day at most")
    if len(job.origin or "") > MAX_NAME_LENGTH:
        raise MalformedMessage("field 'origin' is too long for a queue name")
