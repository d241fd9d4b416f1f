"""Run one django.tasks Task as both workers do: timing, signals, timeouts, refusals."""

import asyncio
import contextlib
import logging
import signal
import sys
import threading
import time
from inspect import iscoroutinefunction
from traceback import format_exception

from asgiref.sync import async_to_sync
from django.core.exceptions import ImproperlyConfigured
from django.db import close_old_connections, connections
from django.tasks import TaskContext, TaskResult, TaskResultStatus
from django.tasks.base import TaskError
from django.tasks.signals import task_finished, task_started
from django.utils import timezone
from django.utils.json import normalize_json

from redis_endpoints import redact_text, redacting_logger

from .exceptions import ForcedStop, MalformedMessage, TaskExited, TaskNotAllowed
from .signals import task_refused

logger = redacting_logger("queues.worker")


def report_refusal(sender, backend_alias, error):
    """Send task_refused for a job or message refused by `error`; returns the reason sent."""
    if isinstance(error, TaskNotAllowed):
        reason = "not-allowed"
    elif isinstance(error, MalformedMessage):
        reason = "malformed"
    else:
        reason = "refused"
    task_refused.send(sender, backend=backend_alias, reason=reason)
    return reason


class TaskTimeout(Exception):
    """Raised inside a task that ran past its backend's JOB_TIMEOUT."""


@contextlib.contextmanager
def time_limit(seconds):
    """Raise TaskTimeout in the running code after `seconds`, as RQ's death penalty does (in an
    async task's coroutine at its await: interrupt()).

    Wrap only the task's own call: once the `with` block is left the alarm can no longer raise, so
    a task whose code returned is never reported as timed out. SIGALRM reaches only the main
    thread: elsewhere (a worker run from a thread, in tests) the limit is not enforced, and the
    worker's /healthz reports the overrun instead (queues.liveness). A task must not use SIGALRM
    itself (the same rule as RQ's).
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return
    armed = True

    def expired(signum, frame):
        if armed:
            cancel_running_queries()
            interrupt(TaskTimeout(f"the task ran past JOB_TIMEOUT ({seconds} s)"))

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    watchdog = QueryWatchdog(seconds)
    try:
        yield
    finally:
        armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        # After the alarm is disarmed: stop() waits for a cancel under way.
        watchdog.stop()
        signal.signal(signal.SIGALRM, previous)


# The async task this thread runs (an AsyncCall), for interrupt().
_running = threading.local()


def interrupt(error):
    """Raise `error` in the task this thread runs, from a signal handler (a timeout, a forced
    stop): here, where a sync task's code runs; an async task's at its coroutine's await
    (AsyncCall.interrupt), and here too if this thread runs a sync function it awaits."""
    call = getattr(_running, "call", None)
    if call is None:
        raise error
    call.interrupt(error)
    if in_sync_call():
        raise error  # as in a sync task's code; the coroutine then stops at its await


try:  # asgiref's frames, to tell where this thread is (in_sync_call)
    from asgiref.current_thread_executor import CurrentThreadExecutor, _WorkItem
    from asgiref.sync import SyncToAsync

    _WAITING = CurrentThreadExecutor.run_until_future.__code__
    _RUNNING, _HANDLER = _WorkItem.run.__code__, SyncToAsync.thread_handler.__code__
except (ImportError, AttributeError):  # another asgiref: the sync call runs to its end
    _WAITING = _RUNNING = _HANDLER = None


def in_sync_call():
    """Is this thread, interrupted by a signal, running a sync function an async task awaits
    through sync_to_async (thread-sensitive: on this thread), rather than waiting for its loop?

    An error raised there ends that function, as in a sync task (an HTTP call, a sleep would run
    on otherwise), and goes to the coroutine awaiting it: asgiref's work item takes any
    BaseException. Not raised while it waits (async_to_sync's, a nested one's too): the error
    would end the wait and leave the coroutine running."""
    frame, callee = sys._getframe(1), None
    while frame is not None and _RUNNING is not None:
        if frame.f_code is _WAITING:
            return False
        if frame.f_code is _RUNNING:
            return callee is _HANDLER  # in the function, not in the work item's own bookkeeping
        frame, callee = frame.f_back, frame.f_code
    return False


class AsyncCall:
    """One run of an async task function, as Django's Task.call (and ImmediateBackend) runs it:
    async_to_sync, its coroutine in an event loop on a thread of its own while this thread
    runs its thread-sensitive sync_to_async calls (the ORM's: on this thread's database
    connections, which the worker cancels and closes as a sync task's).

    A signal handler of this thread must not raise into it: raised here, the error ended
    async_to_sync's wait and left the coroutine running on in its loop (a timed-out task went on
    to its end, and the worker's exit waited for it). interrupt() cancels the coroutine instead;
    it raises `error` from the await it was stopped at, unwinding as a cancelled coroutine does
    (and in the sync function it awaits, should this thread be running one: in_sync_call()).
    """

    def __init__(self, func):
        self.func = func
        self.loop = self.task = self.error = None

    def __call__(self, *args, **kwargs):
        _running.call = self
        try:
            return async_to_sync(self._run)(args, kwargs)
        finally:
            _running.call = None

    async def _run(self, args, kwargs):
        # Set before self.error is read, as interrupt() sets self.error before reading these:
        # an interrupt that comes first is raised here, a later one cancels the task.
        self.loop, self.task = asyncio.get_running_loop(), asyncio.current_task()
        if self.error is not None:
            raise self.error
        try:
            return await self.func(*args, **kwargs)
        except asyncio.CancelledError as cancelled:
            if self.error is None:
                raise  # not ours: the task's own (a future it awaited was cancelled)
            # Its traceback ends at the await the coroutine was stopped at, as a sync task's
            # TaskTimeout names the line it interrupted.
            raise self.error.with_traceback(cancelled.__traceback__) from None

    def interrupt(self, error):
        """Stop the coroutine at its await with `error` (from this thread's signal handler)."""
        self.error = error
        if self.task is not None:
            # A loop closed already: its coroutine has ended, async_to_sync is returning.
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._cancel)

    def _cancel(self):
        """In the loop: cancel the coroutine or, once it has returned, the tasks it left there.
        The loop ends (asyncio.run cancels them) only when they have: a cleanup awaiting 30 s held
        the worker past JOB_TIMEOUT and a second stop signal, whose cancel reached a done task."""
        if not self.task.done():
            self.task.cancel()  # its own cleanup may still await the tasks it started
            return
        for task in asyncio.all_tasks():
            task.cancel()


def call_task(task, *args, **kwargs):
    """task.call(*args, **kwargs); an async task's through AsyncCall (interruptible)."""
    if iscoroutinefunction(task.func):
        return AsyncCall(task.func)(*args, **kwargs)
    return task.call(*args, **kwargs)


# libpq's PQTRANS_ACTIVE, a query running: psycopg 3's and psycopg2's info.transaction_status.
TRANSACTION_ACTIVE = 1


def cancel_running_queries(wrappers=None):
    """Ask PostgreSQL to stop the queries this thread's connections are running (`wrappers`:
    those Django connections, of another thread).

    Interrupting the client does not stop the server: a timed-out task's UPDATE would run on and
    keep its row locks, and the retried task would wait behind it. The worker closes these
    connections afterwards (their protocol state is unknown).
    """
    for connection in connections.all(initialized_only=True) if wrappers is None else wrappers:
        raw = connection.connection
        if raw is None or connection.vendor != "postgresql":
            continue
        try:
            if raw.info.transaction_status != TRANSACTION_ACTIVE:
                continue
            if hasattr(raw, "cancel_safe"):
                raw.cancel_safe(timeout=2)
            else:  # psycopg 3.1 (Django takes 3.1.12 on), psycopg2: the blocking cancel
                raw.cancel()
        except Exception:
            logger.warning("Could not cancel the query of a timed-out task", exc_info=True)


class QueryWatchdog:
    """On psycopg2, a timer that cancels the queries of the thread that made it once `seconds`
    have passed, from a thread of its own; stop() it when the timed call ends.

    psycopg2 runs a signal's handler (the timeout's SIGALRM) only once the running query returns:
    a task waiting on a query (a lock never granted) overran its timeout for as long as the query
    lasted. Canceled, the query returns and the handler runs. psycopg 3 runs the handler during
    the query: nothing to start there."""

    def __init__(self, seconds):
        self.timer = None
        wrappers = []
        for alias in connections:
            try:
                wrappers.append(connections[alias])
            except ImproperlyConfigured:
                # A backend this process cannot load (its driver not installed: an alias the
                # tasks do not use) has no query to cancel; raised, it failed every task.
                continue
        if seconds and seconds > 0 and any(map(on_psycopg2, wrappers)):
            self.timer = threading.Timer(seconds, cancel_running_queries, [wrappers])
            self.timer.daemon = True
            self.timer.start()

    def stop(self):
        """Disarm it; a cancel under way is waited for, so that it meets no later query."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer.join()


def on_psycopg2(connection):
    """Whether a Django connection is PostgreSQL's on psycopg2 (Django takes it without psycopg 3)."""
    return connection.vendor == "postgresql" and connection.Database.__name__ == "psycopg2"


def discard_connections():
    """Close this process's connections: a task interrupted in one leaves it in an unknown state."""
    for connection in connections.all(initialized_only=True):
        try:
            connection.close()
        except Exception:
            logger.warning("Could not close a connection after a timeout", exc_info=True)


def new_result(task, result_id, args, kwargs, backend, enqueued_at=None, worker_ids=()):
    """A READY TaskResult; `worker_ids` of the earlier attempts make `context.attempt` count on."""
    return TaskResult(
        task=task,
        id=result_id,
        status=TaskResultStatus.READY,
        enqueued_at=enqueued_at,
        started_at=None,
        last_attempted_at=None,
        finished_at=None,
        args=list(args),
        kwargs=dict(kwargs),
        backend=backend,
        errors=[],
        worker_ids=list(worker_ids),
    )


def set_result(result, **changes):
    for name, value in changes.items():
        object.__setattr__(result, name, value)


def execute(result, worker_id, sender, timeout=None):
    """Run the task of `result`, sending task_started/task_finished; re-raises the task's error.

    `timeout`: seconds the task's own code may run before TaskTimeout is raised inside it.
    """
    task = result.task
    started_at = timezone.now()
    set_result(
        result, status=TaskResultStatus.RUNNING, started_at=started_at, last_attempted_at=started_at
    )
    result.worker_ids.append(worker_id)
    task_started.send(sender=sender, task_result=result)
    try:
        with time_limit(timeout):
            if task.takes_context:
                value = call_task(
                    task, TaskContext(task_result=result), *result.args, **result.kwargs
                )
            else:
                value = call_task(task, *result.args, **result.kwargs)
        # Outside the time limit (a task whose code returned is never timed out), inside the
        # attempt: a return value JSON cannot hold fails it, as in Django's ImmediateBackend,
        # with task_finished sent and the error in result.errors.
        return_value = normalize_json(value)
    except ForcedStop:
        raise  # the worker stops now (its second stop signal), not the task
    except BaseException as error:
        # Any other BaseException (a task's sys.exit()) fails the attempt too, as in Django's
        # ImmediateBackend: raised on, it ended the SQS worker, and each worker after it that
        # received the message again, until the queue's redrive policy took it away. So does a
        # KeyboardInterrupt, which Django's ImmediateBackend raises on (there a Ctrl-C of the
        # web process): both workers handle SIGINT themselves (request_stop, ForcedStop), so
        # in a worker it can only come from the task's code. Raised on, it was such a poison
        # message too, and a --concurrency worker process it ended exited 0: the others
        # followed it one by one, and `runworker` itself then exited 0 with no worker left.
        kind = type(error)
        result.errors.append(
            TaskError(
                exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
                traceback=redact_text("".join(format_exception(error))),  # kept, shown
            )
        )
        set_result(result, status=TaskResultStatus.FAILED, finished_at=timezone.now())
        failure = error
        if not isinstance(error, Exception):
            failure = TaskExited(f"the task raised {kind.__qualname__}: {error!r}")
            failure.__cause__ = error
    else:
        failure = None
    if failure is not None:
        # Sent outside the `except` block: Django's own receiver logs a failed task with
        # sys.exc_info(), and the traceback would be printed twice, as the worker prints it too
        # (RQ's logger, or the SQS worker's). The traceback stays in result.errors.
        task_finished.send(sender=sender, task_result=result)
        raise failure
    set_result(
        result,
        status=TaskResultStatus.SUCCESSFUL,
        finished_at=timezone.now(),
        _return_value=return_value,
    )
    task_finished.send(sender=sender, task_result=result)
    return result._return_value


class TaskTimer:
    """Times one job and logs the one line per task the workers promise."""

    def __init__(self, task_path, job_id):
        self.task_path, self.job_id = task_path, job_id
        self.started = time.monotonic()

    def log(self, outcome, level=logging.INFO, **details):
        """`details` (reason=, attempt=, next=…) end the line as key=value, and are fields of
        their own in JSON logs, as the rest is."""
        duration = time.monotonic() - self.started
        details = {key: str(value) for key, value in details.items()}
        logger.log(
            level,
            "task=%s id=%s outcome=%s duration=%.3fs%s",
            self.task_path,
            self.job_id,
            outcome,
            duration,
            "".join(f" {key}={value}" for key, value in details.items()),
            # The same as fields, for JSON logs (LOG_FORMAT=json).
            extra={
                "task": self.task_path,
                "task_id": self.job_id,
                "outcome": outcome,
                "duration": round(duration, 3),
                **details,
            },
        )


def between_jobs():
    """Drop database connections that went stale or broke, as Django does between requests."""
    close_old_connections()
