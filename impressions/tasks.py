"""The flush and the daily roll-up as django.tasks tasks, and enqueueing them."""

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import Min
from django.tasks import Task, task, task_backends
from django.tasks.exceptions import InvalidTask, InvalidTaskBackend
from django.utils import timezone

from redis_endpoints import redacting_logger

from . import keys, periods, rollup, scripts, stats
from .conf import GUARD_GRACE_SECONDS, conf
from .exceptions import FlushError
from .flush import flush_pending
from .models import HistoryRollup, OpenDailyImpressions, SiteDailyImpressions
from .redis_client import get_flush_client
from .signals import flush_window_lapsed

logger = redacting_logger(__name__)

# How long the roll-up's schedule guard lasts: a roll-up enqueued and lost is enqueued again by
# a flush after this long.
ROLLUP_GUARD_TTL = 3600


def impressions_task(**options):
    """@task on the backend and queue that IMPRESSIONS_TASK_BACKEND and IMPRESSIONS_TASK_QUEUE
    name (read once, here, when this module is first imported at start-up). Django checks them
    as it defines the task; a bad one makes an UnusableTask instead of stopping the import, so
    that `manage.py check` reports it (impressions.E007) beside every other bad setting."""

    def decorate(function):
        backend, queue = conf.TASK_BACKEND, conf.TASK_QUEUE
        try:
            return task(backend=backend, queue_name=queue, **options)(function)
        except (InvalidTask, InvalidTaskBackend) as error:
            problem = (
                f"The impressions tasks go to IMPRESSIONS_TASK_BACKEND={backend!r},"
                f" IMPRESSIONS_TASK_QUEUE={queue!r}: {error}{queues_hint(backend)}"
            )
            return UnusableTask(func=function, backend=backend, queue_name=queue, problem=problem)

    return decorate


@dataclass(frozen=True, slots=True, kw_only=True)
class UnusableTask(Task):
    """A task whose backend or queue Django refused: it imports, its check fails naming the
    settings (checks.py), and enqueueing it raises ImproperlyConfigured saying the same."""

    problem: str = ""

    def __post_init__(self):
        pass  # not validated: `problem` says why it cannot be

    def get_backend(self):
        raise ImproperlyConfigured(self.problem)


def queues_hint(alias):
    """ " (its queues: ...)" for a TASKS alias that has a list of queues, else ""."""
    try:
        queues = task_backends[alias].queues
    except Exception:
        return ""
    return f" (its queues: {', '.join(sorted(queues))})" if queues else ""


@impressions_task(takes_context=True)
def flush_impressions_task(context=None, part=0, parts=1, window=None, manual=False):
    """Flush pending impressions (the shards of `part` of `parts`, of the scheduled `window`);
    after the last attempt, schedule a later flush so nothing stays stranded. `manual`: asked for
    by hand ("Flush now") or by a full Redis (enqueue_flush's `soon`), it leaves the scheduled
    flush in place.

    A backend that retries failed tasks runs the flush again itself: re-scheduling on every
    failure as well would make two flushes where one is meant. `context` is None when called
    directly (`.call()`), which counts as a last attempt.
    """
    if window is not None:
        warn_of_another_prefix(window)
    try:
        report = flush_pending(part=part, parts=parts, window=window, keep_schedule=manual)
    except FlushError:
        if is_last_attempt(context):
            try:
                rearm_after_failure(get_flush_client())
            except Exception:
                logger.exception("could not re-schedule the impressions flush")
        raise
    schedule_rollup()
    return report.as_dict()


@impressions_task()
def rollup_impressions_task():
    """Roll the ended days up and prune the history (impressions/rollup.py)."""
    report = rollup.roll_up()
    try:
        get_flush_client().delete(keys.rollup_guard_key())  # a later need schedules it again
    except Exception:
        logger.warning("could not release the roll-up's schedule guard", exc_info=True)
    return report.as_dict()


def is_last_attempt(context):
    """Whether the task backend will not run this failed flush again.

    A backend announces its retries with a `max_attempts` attribute (the queues app's backends
    do); Django's own backends have none and never retry.
    """
    if context is None:
        return True
    backend = flush_impressions_task.get_backend()
    return context.attempt >= getattr(backend, "max_attempts", 1)


def later(seconds):
    """The moment `seconds` from now, in real time, as the project's datetimes are (aware; naive
    in TIME_ZONE when USE_TZ = False, with the `fold` that tells a repeated hour's two apart).

    Not the naive wall clock plus `seconds`: at 01:58 EDT on the night New York's 01:00-02:00
    comes twice, that was 02:03 EST, 65 minutes away, and at 01:30 EST, 01:35 EDT, 55 minutes ago.
    """
    now = timezone.now()
    if timezone.is_aware(now):
        return now + timedelta(seconds=seconds)
    moment = periods.utc(now) + timedelta(seconds=seconds)
    return timezone.make_naive(moment, timezone.get_default_timezone())


def enqueue_flush(delay=0, manual=False, soon=False, guard=None):
    """Enqueue a window's flush `delay` seconds from now: IMPRESSIONS_FLUSH_PARTS tasks, each
    for its share of the shards, together; returns the first one's result. `manual` (asked for
    by hand): one task for every shard, which leaves the scheduled window in place. `soon` (Redis
    refused a record call for want of memory, schedule.FullRedis): the parts' tasks, now, and
    they leave the scheduled window in place too.

    `guard`: the value of the schedule guard taken for this window, which the window's token
    carries ("<token>~<mark>@<guard>"): its first part deletes that guard only (flush.window_command).

    A backend that cannot defer (ImmediateBackend) gets them without run_after: they run now,
    or, inside a transaction (ATOMIC_REQUESTS), once it commits (then this returns None).
    """
    deferring = flush_impressions_task.get_backend().supports_defer
    if not manual and not deferring and connection.in_atomic_block:
        # Run here, the flush's commits would be savepoints of the caller's transaction: a view
        # failing after record() would undo them after the flush took the counts out of Redis.
        # Rolled back instead, the counts stay in Redis for the flush the next window schedules.
        transaction.on_commit(lambda: enqueue_flush_tasks(delay, manual, soon, guard), robust=True)
        return None
    return enqueue_flush_tasks(delay, manual, soon, guard)


def enqueue_flush_tasks(delay, manual, soon=False, guard=None):
    flush_task = flush_impressions_task
    if delay and flush_task.get_backend().supports_defer:
        flush_task = flush_task.using(run_after=later(delay))
    if manual:
        return flush_task.enqueue(manual=True)
    parts = conf.FLUSH_PARTS
    if soon:  # no window: the scheduled one stays open (flush_pending's keep_schedule)
        results = [flush_task.enqueue(part=part, parts=parts, manual=True) for part in range(parts)]
        return results[0]
    window = window_token(guard)
    results = [flush_task.enqueue(part=part, parts=parts, window=window) for part in range(parts)]
    return results[0]


def window_token(guard=None):
    """A scheduled window's token: "<16 hex>~<keys.window_mark()>@<guard>" (flush.window_command
    reads what follows "@"; a version before wrote no "~<mark>")."""
    return f"{secrets.token_hex(8)}~{keys.window_mark()}" + (f"@{guard}" if guard else "")


def warn_of_another_prefix(window):
    """Log when the window was scheduled under another IMPRESSIONS_KEY_PREFIX: two projects
    share this task queue (or the prefix changed while the window waited). Such a task flushes
    this worker's buffer, which is harmless; the window's own buffer keeps its schedule guard
    until it lapses and waits for its next impression after that."""
    mark = window.partition("@")[0].partition("~")[2]
    if not mark or mark == keys.window_mark():
        return
    logger.warning(
        "A flush task scheduled under another IMPRESSIONS_KEY_PREFIX (its mark %s, this"
        " project's %s) reached this worker: another project shares the task queue %r of"
        " backend %r (or the prefix changed since). This worker flushes its own buffer; the"
        " other's counts wait for its next impression after IMPRESSIONS_FLUSH_DELAY + %d s."
        " Give each project a queue of its own (IMPRESSIONS_TASK_QUEUE).",
        mark,
        keys.window_mark(),
        flush_impressions_task.queue_name,
        flush_impressions_task.backend,
        GUARD_GRACE_SECONDS,
    )


def take_guard(client):
    """SET NX the schedule guard, its value the server's time (when the window was scheduled), on
    a full Redis too (scripts.TAKE_SCHEDULE): the flush it schedules is what frees Redis; and
    note the window it names (keys.scheduled_window_key), saying if the one before it saw no
    flush (lost_window). Returns that value when it took the guard, else None."""
    taken, *rest = client.execute_command(
        "EVAL",
        scripts.TAKE_SCHEDULE,
        2,
        keys.guard_key(),
        keys.scheduled_window_key(),
        conf.GUARD_TTL,
    )
    if not taken:
        return None
    lapsed, ttl, value = rest
    lost_window(lapsed, ttl)
    return value.decode() if isinstance(value, bytes) else str(value)


def lost_window(lapsed, ttl):
    """Taking the schedule guard found the key of the window scheduled before still there
    (`lapsed`: its value, the time that window was scheduled, None if none; `ttl`: that key's
    PTTL then), so that window's flush never started before its guard lapsed: warn, once a
    window, in the process that schedules the next. Unless the key is younger than the guard's
    time (IMPRESSIONS_FLUSH_DELAY + 60 s, less a second): a guard gone that soon was deleted by
    its window's flush, not lapsed, and the key left by a build before this one. The record
    script (or TAKE_SCHEDULE) read them as it took the guard: no round trip of its own."""
    if lapsed is None:
        return
    scheduled_at = lapsed.decode() if isinstance(lapsed, bytes) else str(lapsed)
    age = scripts.SCHEDULED_WINDOW_TTL - ttl / 1000 if ttl > 0 else None
    if age is not None and age < conf.GUARD_TTL - 1:
        # Its guard, taken with the key, was deleted before it could lapse: its flush started,
        # under a build that leaves the key (an earlier worker in a rolling deploy).
        return
    at = unix_or_none(scheduled_at)
    # Robust: it runs between taking the guard and enqueueing its flush; a receiver that raised
    # there left the guard taken and no flush enqueued, and so at every window after (its
    # error is logged, by django.dispatch).
    flush_window_lapsed.send_robust(lost_window, seen_by="schedule", scheduled_at=at)
    when = "" if at is None else f" at {datetime.fromtimestamp(at, UTC):%Y-%m-%d %H:%M:%S} UTC"
    logger.warning(
        "impressions flush lost or late: no flush of the window scheduled%s%s started before its"
        " schedule guard lapsed (IMPRESSIONS_FLUSH_DELAY + %d s): its task was lost (the queue"
        " purged, the RQ Redis emptied or restarted, the message moved to the dead-letter queue)"
        " or no worker is taking it. Its counts waited in Redis; the flush scheduled now takes"
        " them. Check that runworker runs, its queue and the dead-letter queue",
        when,
        "" if age is None else f" ({age:.0f} s ago)",
        GUARD_GRACE_SECONDS,
        extra={"lost_window": scheduled_at, "lost_window_age": age},
    )


def unix_or_none(text):
    try:
        return float(text)
    except ValueError:
        return None


def set_if_absent(client, key, value, ttl):
    """SET key value NX EX ttl that a full Redis takes too (scripts.TAKE_GUARD); True if set."""
    return client.execute_command("EVAL", scripts.TAKE_GUARD, 1, key, value, ttl) == 1


def rearm_after_failure(client):
    """After a failed flush: schedule another one so snapshots left behind are retried."""
    if not flush_impressions_task.get_backend().supports_defer:
        return False  # running it again right now would just fail again, recursively
    try:
        if guard := take_guard(client):
            try:
                enqueue_flush(delay=conf.FLUSH_DELAY, guard=guard)
            except Exception:
                client.delete(keys.scheduled_window_key())  # no task: none lost
                raise
            return True
    except Exception:
        logger.exception("could not re-schedule the impressions flush")
    return False


def rollup_needed(today=None):
    """Whether an ended day is still open, a roll-up stopped half-way, or history is older than
    IMPRESSIONS_HISTORY_DAYS keeps: three index reads."""
    today = today or stats.today()
    state = HistoryRollup.objects.filter(id=1).first()
    if state is not None and state.rolling_day is not None:
        return True
    first_open = OpenDailyImpressions.objects.aggregate(day=Min("day"))["day"]
    if first_open is not None and first_open < today:
        return True
    oldest = stats.oldest_kept_day(today)
    first_day = SiteDailyImpressions.objects.aggregate(day=Min("day"))["day"]
    return oldest is not None and first_day is not None and first_day < oldest


def schedule_rollup():
    """Enqueue the roll-up when it has work, once (a Redis guard), a flush delay from now: the
    flushes of the first window after midnight bring the ended day's last counts first."""
    try:
        if not rollup_needed():
            return False
        # On a full Redis too: a flush that just freed it may leave it full again, and the
        # roll-up's turn would then pass until the next flush.
        if not set_if_absent(get_flush_client(), keys.rollup_guard_key(), "1", ROLLUP_GUARD_TTL):
            return False
        rollup_task = rollup_impressions_task
        if conf.FLUSH_DELAY and rollup_task.get_backend().supports_defer:
            rollup_task = rollup_task.using(run_after=later(conf.FLUSH_DELAY))
        rollup_task.enqueue()
        return True
    except Exception:
        # The next flush tries again; the flush itself is done.
        logger.exception("could not schedule the impressions roll-up")
        return False
