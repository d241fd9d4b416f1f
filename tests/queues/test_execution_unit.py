"""queues.execution.execute, which both workers run a task through: the django.tasks contract."""

import asyncio
import contextlib
import signal
import sys
import threading
import time

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.tasks import TaskResultStatus, task
from django.tasks.signals import task_finished, task_started
from rq.timeouts import JobTimeoutException

from queues.exceptions import ForcedStop, TaskExited
from queues.execution import (
    AsyncCall,
    QueryWatchdog,
    TaskTimeout,
    execute,
    interrupt,
    new_result,
    time_limit,
)
from queues.rq.worker import CancellingDeathPenalty


@task
def returns_a_set():
    return {1, 2}


@task
def returns_a_tuple():
    return (1, (2, 3))


@task
def exits():
    sys.exit(3)


@task
def interrupts():
    raise KeyboardInterrupt


@task
def is_stopped():
    raise ForcedStop(1)


UNWOUND = []


@task
async def awaits_long():
    try:
        await asyncio.sleep(30)
    finally:
        UNWOUND.append("awaits_long")


@task
async def asks_its_thread():
    """The thread its thread-sensitive sync_to_async call (the ORM's kind) ran on."""
    await asyncio.sleep(0)
    return await sync_to_async(threading.get_ident)()


@contextlib.contextmanager
def alarm_raising(error, after=0.2):
    """A signal handler interrupting the task with `error` after `after` s, as the workers' do."""

    def handler(signum, frame):
        interrupt(error)

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, after)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run(a_task):
    seen = []

    def remember(sender, task_result, **kwargs):
        seen.append(task_result.status)

    task_started.connect(remember)
    task_finished.connect(remember)
    # Its own alias: the site's metrics count running tasks by alias, and a forced stop sends
    # no task_finished (tests/site/test_metrics.py reads "default"'s gauge).
    result = new_result(a_task, "x" * 32, [], {}, "execution-unit")
    try:
        try:
            execute(result, "worker-1", sender=object)
        except Exception as error:
            return result, seen, error
        return result, seen, None
    finally:
        task_started.disconnect(remember)
        task_finished.disconnect(remember)


def test_a_return_value_json_cannot_hold_fails_the_attempt_as_django_s_backends_do():
    # Django's ImmediateBackend: FAILED, the TypeError in errors, task_finished sent. Before, the
    # TypeError left the result RUNNING and task_finished unsent (a receiver counting started
    # and finished tasks saw a task running for ever), with nothing in errors.
    result, seen, error = run(returns_a_set)
    assert isinstance(error, TypeError)
    assert seen == [TaskResultStatus.RUNNING, TaskResultStatus.FAILED]
    assert result.status == TaskResultStatus.FAILED
    assert result.finished_at is not None
    assert [e.exception_class for e in result.errors] == [TypeError]
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value  # noqa: B018 (the property raises)


def test_a_return_value_is_normalized_to_json():
    result, seen, error = run(returns_a_tuple)
    assert error is None
    assert seen == [TaskResultStatus.RUNNING, TaskResultStatus.SUCCESSFUL]
    assert result.return_value == [1, [2, 3]]


def test_a_task_s_sys_exit_fails_its_attempt_and_the_worker_goes_on():
    """Django's ImmediateBackend marks it FAILED with SystemExit in errors. Raised on, it ended
    the SQS worker (and each one after it that received the message again)."""
    result, seen, error = run(exits)
    assert isinstance(error, TaskExited)  # an Exception: the workers' failure handling takes it
    assert isinstance(error.__cause__, SystemExit)
    assert seen == [TaskResultStatus.RUNNING, TaskResultStatus.FAILED]
    assert [e.exception_class for e in result.errors] == [SystemExit]


def test_the_worker_s_forced_stop_still_stops_it():
    with pytest.raises(ForcedStop):
        run(is_stopped)


def test_a_task_s_keyboard_interrupt_fails_its_attempt_and_the_worker_goes_on():
    """Both workers handle SIGINT themselves: a KeyboardInterrupt can only be the task's own. Raised
    on, it ended the SQS worker and each one after it that received the message again; under
    --concurrency each worker process it ended exited 0, until runworker had none left."""
    result, seen, error = run(interrupts)
    assert isinstance(error, TaskExited)
    assert isinstance(error.__cause__, KeyboardInterrupt)
    assert seen == [TaskResultStatus.RUNNING, TaskResultStatus.FAILED]
    assert [e.exception_class for e in result.errors] == [KeyboardInterrupt]


def test_an_interrupted_async_task_is_stopped_at_its_await_and_unwinds():
    # Raised in this thread, the handler's error ended async_to_sync's wait and left the
    # coroutine awaiting on in its loop's thread (for 30 s here), unseen.
    UNWOUND.clear()
    started = time.monotonic()
    with alarm_raising(TaskTimeout("past JOB_TIMEOUT")):
        result, seen, error = run(awaits_long)
    assert time.monotonic() - started < 5
    assert isinstance(error, TaskTimeout)
    assert UNWOUND == ["awaits_long"]  # stopped before execute() returned
    assert seen == [TaskResultStatus.RUNNING, TaskResultStatus.FAILED]
    [failure] = result.errors
    assert failure.exception_class is TaskTimeout
    assert "await asyncio.sleep(30)" in failure.traceback  # where it was stopped


def test_a_forced_stop_during_an_async_task_still_stops_the_worker():
    UNWOUND.clear()
    with pytest.raises(ForcedStop), alarm_raising(ForcedStop(1)):
        run(awaits_long)
    assert UNWOUND == ["awaits_long"]


def test_an_interrupt_before_the_coroutine_starts_is_raised_as_it_starts():
    called = []

    async def never(*args):
        called.append(args)

    call = AsyncCall(never)
    call.interrupt(TaskTimeout("early"))  # the alarm came before the loop ran the coroutine
    with pytest.raises(TaskTimeout, match="early"):
        call()
    assert called == []


def test_async_tasks_thread_sensitive_calls_run_on_the_worker_s_thread_task_after_task():
    # The ORM's sync_to_async calls use this thread's database connections, which the worker
    # checks, cancels and closes; a second task's loop is a new one (the first's is closed).
    for _ in range(2):
        result, _, error = run(asks_its_thread)
        assert error is None
        assert result.return_value == threading.get_ident()


def test_a_database_this_worker_cannot_load_fails_no_task_and_leaves_no_timeout_armed(monkeypatch):
    """A DATABASES alias the tasks never use, whose backend this process cannot load (a
    reporting database on MySQL, mysqlclient not installed in the workers' image): the timeout's
    psycopg2 watchdog looked at every alias's connection, so every task failed with "Error
    loading MySQLdb module", on psycopg 3 too, and the timeout stayed armed: the SQS worker's
    TaskTimeout, RQ's JobTimeoutException, was raised into the worker's loop after the task."""
    engine = "tests.queues.no_such_database_backend"  # load_backend fails as without its driver
    monkeypatch.setitem(connections.settings, "reporting", {"ENGINE": engine})
    result = new_result(returns_a_tuple, "y" * 32, [], {}, "execution-unit")
    execute(result, "worker-1", sender=object, timeout=1)
    assert result.return_value == [1, [2, 3]]
    with CancellingDeathPenalty(1, JobTimeoutException):
        pass
    time.sleep(1.3)  # past both timeouts: nothing is raised here


def test_a_task_that_returned_is_not_timed_out_while_its_watchdog_stops(monkeypatch):
    """time_limit's exit waits for the psycopg2 watchdog's cancel under way (up to 2 s): the
    alarm was still armed then, and one falling in that wait raised TaskTimeout for a task whose
    code had returned. Disarmed first, it never reaches the caller."""
    monkeypatch.setattr(QueryWatchdog, "stop", lambda self: time.sleep(0.3))  # a cancel under way
    with time_limit(0.2):
        time.sleep(0.1)
