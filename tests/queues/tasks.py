"""Tasks the queue tests enqueue; they leave markers in the test Redis (settings.IMPRESSIONS_REDIS_URL)."""

import asyncio
import sys
import threading
import time

import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.tasks import task

MARKERS = "queues-test:markers"
# An installed app's module that is not its tasks module; importing it counts here.
SIDE_EFFECT_MODULE = "tests.queues.taskapp.side_effect_on_import"
SIDE_EFFECT_KEY = "queues-test:side-effect-imported"


def markers_client():
    return redis.Redis.from_url(settings.IMPRESSIONS_REDIS_URL, decode_responses=True)


def markers():
    return markers_client().lrange(MARKERS, 0, -1)


def side_effect_imports():
    """How often side_effect_on_import was imported since the key was last deleted."""
    return int(markers_client().get(SIDE_EFFECT_KEY) or 0)


@task
def record_marker(name):
    markers_client().rpush(MARKERS, name)
    return name


@task(takes_context=True)
def fail_until(context, name, succeed_on):
    """Marks `name:attempt:time` on each run; fails on the attempts before `succeed_on`."""
    markers_client().rpush(MARKERS, f"{name}:{context.attempt}:{time.time():.3f}")
    if context.attempt < succeed_on:
        raise RuntimeError(f"attempt {context.attempt} of {name} fails on purpose")
    return context.attempt


def attempts_of(name):
    """[(attempt, time)] of the fail_until(name, …) runs so far, in order."""
    runs = [marker.split(":") for marker in markers() if marker.startswith(f"{name}:")]
    return [(int(attempt), float(at)) for _, attempt, at in runs]


@task
def sleep_then_mark(seconds, name):
    time.sleep(seconds)
    markers_client().rpush(MARKERS, name)


@task
def fail_always(name):
    markers_client().rpush(MARKERS, f"failed:{name}")
    raise RuntimeError(f"task {name} fails on purpose")


def not_a_task(name):
    """A plain function: the workers must refuse to call it even when a job names it."""
    markers_client().rpush(MARKERS, f"not-a-task:{name}")


@task
def slow_marker(name, seconds):
    """Marks its start, sleeps, marks its end: lets a test signal a worker mid-task."""
    markers_client().rpush(MARKERS, f"start:{name}")
    time.sleep(seconds)
    markers_client().rpush(MARKERS, name)


RELEASES = "queues-test:release:"


@task
def held_marker(name, seconds):
    """slow_marker that the test may end early with release(name): marks its start, waits until
    released or `seconds` passed, marks its end."""
    client = markers_client()
    client.delete(RELEASES + name)  # a release left by an earlier test is not for this run
    client.rpush(MARKERS, f"start:{name}")
    client.blpop([RELEASES + name], timeout=seconds)
    client.rpush(MARKERS, name)


def release(name):
    """Ends the running held_marker(name, …) now."""
    client = markers_client()
    client.rpush(RELEASES + name, 1)
    client.expire(RELEASES + name, 60)


@task
def sleep_then_return_much(seconds, items):
    """Its code ends after `seconds`; turning its return value into JSON takes a while longer."""
    time.sleep(seconds)
    markers_client().rpush(MARKERS, "returned")
    return list(range(items))


@task
def hold_database(seconds, tag):
    """A long query: a timed-out task must not leave it running on the server."""
    from django.db import connection

    markers_client().rpush(MARKERS, "querying")
    with connection.cursor() as cursor:  # the tag (hex) names this test's query in pg_stat_activity
        cursor.execute(f"SELECT pg_sleep(%s) AS held_{int(tag, 16):x}", [seconds])


def queries_still_held(tag):
    """How many hold_database(…, tag) queries the server still runs (on a connection of its own)."""
    import psycopg
    from django.db import connection

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as own:
        return own.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
            " AND query LIKE %s AND pid <> pg_backend_pid()",
            [f"%held_{int(tag, 16):x}%"],
        ).fetchone()[0]


def no_query_held(tag, within=3.0):
    """True once no hold_database(…, tag) query runs; False if one still runs after `within` s."""
    deadline = time.monotonic() + within
    while queries_still_held(tag):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@task(takes_context=True)
def context_times(context):
    """The times the worker handed the task (its TaskResult's enqueued_at and started_at), ISO."""
    result = context.task_result
    return [result.enqueued_at.isoformat(), result.started_at.isoformat()]


@task(takes_context=True)
def context_task(context):
    """The backend alias and queue of the Task the worker handed the task (its result's task)."""
    return [context.task_result.task.backend, context.task_result.task.queue_name]


@task
def exits(name):
    """A task that calls sys.exit(): its attempt fails, the worker goes on."""
    markers_client().rpush(MARKERS, f"exited:{name}")
    sys.exit(3)


@task
def interrupts(name):
    """A task that raises KeyboardInterrupt: its attempt fails, the worker goes on."""
    markers_client().rpush(MARKERS, f"interrupted:{name}")
    raise KeyboardInterrupt


@task
def where_it_runs():
    """A sync task says where the worker ran it: (on its main thread, inside an event loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        in_loop = False
    else:
        in_loop = True
    return [threading.current_thread() is threading.main_thread(), in_loop]


# Async task functions (`async def`): the workers run their coroutines as Django's own backends
# run them (Task.call: async_to_sync).


@task
async def async_marker(name):
    """Marks `async:name` after an await; returns `name`."""
    await asyncio.sleep(0)
    markers_client().rpush(MARKERS, f"async:{name}")
    return name


@task(takes_context=True)
async def async_fail_until(context, name, succeed_on):
    """fail_until as a coroutine: marks `name:attempt:time`, fails before attempt `succeed_on`."""
    await asyncio.sleep(0)
    markers_client().rpush(MARKERS, f"{name}:{context.attempt}:{time.time():.3f}")
    if context.attempt < succeed_on:
        raise RuntimeError(f"attempt {context.attempt} of {name} fails on purpose")
    return context.attempt


@task
async def async_slow_marker(name, seconds):
    """Marks its start, awaits `seconds`, marks its end; `unwound:name` however it stops: a
    timed-out or stopped coroutine is stopped at its await (it unwinds), not left running."""
    markers_client().rpush(MARKERS, f"start:{name}")
    try:
        await asyncio.sleep(seconds)
    finally:
        markers_client().rpush(MARKERS, f"unwound:{name}")
    markers_client().rpush(MARKERS, name)


@task
async def async_hold_database(seconds, tag):
    """hold_database's long query, from a coroutine through sync_to_async (as the async ORM)."""
    await sync_to_async(hold_database.func)(seconds, tag)


async def _lingering(name, seconds):
    """A background asyncio task whose cleanup, once cancelled, awaits `seconds` (as a client's
    graceful close can)."""
    try:
        await asyncio.sleep(3600)
    finally:
        markers_client().rpush(MARKERS, f"cleanup:{name}")
        try:
            await asyncio.sleep(seconds)
        finally:
            markers_client().rpush(MARKERS, f"cleaned:{name}")


_BACKGROUND = set()  # asyncio keeps only weak references to tasks


@task
async def async_leaves_background(name, seconds):
    """Returns `name` at once, leaving a background task running in its loop (cancelled when the
    loop ends, its cleanup then awaiting `seconds`)."""
    background = asyncio.create_task(_lingering(name, seconds))
    _BACKGROUND.add(background)
    background.add_done_callback(_BACKGROUND.discard)
    await asyncio.sleep(0)
    markers_client().rpush(MARKERS, f"returned:{name}")
    return name


@task
async def async_blocking_call(name, seconds):
    """Awaits a blocking sync call (time.sleep, as a sync HTTP client's) through sync_to_async,
    which runs it on the worker's thread; `unwound:name` however it stops."""
    markers_client().rpush(MARKERS, f"start:{name}")
    try:
        await sync_to_async(time.sleep)(seconds)
    finally:
        markers_client().rpush(MARKERS, f"unwound:{name}")
    markers_client().rpush(MARKERS, name)
