""" "Flush now" in the admin: enqueue a flush by hand, wait for it, and say what that flush did.

A worker runs the flush (never the request), so the page that pressed the button is shown again
only once the result is known: the POST waits a moment, then a small page refreshes itself until
the flush has run. The result comes from the task backend when it keeps results (RQ, Immediate),
else from the ledger: the first flush that started after the button was pressed. What it says
links the ledger row on the admin site the button was on (`current_app`, as Django's `reverse`).
"""

import time
from dataclasses import dataclass

from django.tasks import TaskResultStatus
from django.tasks.exceptions import TaskResultDoesNotExist
from django.urls import reverse
from django.utils.formats import number_format
from django.utils.html import format_html
from django.utils.translation import gettext

from .conf import counted_objects, counted_plural
from .dashboard import impressions_text, run_time_text
from .ledger import run_time, started_utc
from .models import Flush
from .periods import utc
from .tasks import enqueue_flush, flush_impressions_task

WAIT_IN_REQUEST = 2.0  # seconds the POST waits for the result before showing the waiting page
POLL_EVERY = 0.1
NO_WORKER_AFTER = 30  # seconds: then the waiting page asks whether a worker is running


@dataclass(frozen=True)
class Outcome:
    """What became of a flush asked for by hand: `done`, and then `ok` and the message."""

    done: bool
    ok: bool = True
    message: str = ""


PENDING = Outcome(done=False)


def start():
    """Enqueue the manual flush; returns its TaskResult (raises what the backend raises)."""
    return enqueue_flush(delay=0, manual=True)


def wait(result, since, timeout=None, current_app=None):
    """The Outcome of `result`, waiting up to `timeout` s (WAIT_IN_REQUEST) for the flush."""
    deadline = time.monotonic() + (WAIT_IN_REQUEST if timeout is None else timeout)
    while True:
        outcome = outcome_of(result.id, since, result, current_app)
        if outcome.done or time.monotonic() >= deadline:
            return outcome
        time.sleep(POLL_EVERY)


def outcome_of(result_id, since, result=None, current_app=None):
    """The Outcome of the flush task `result_id`, enqueued at `since` (a datetime: aware, or
    naive as TIME_ZONE's wall clock)."""
    if result is not None and result.is_finished:  # a backend that ran it at once
        return outcome_of_result(result, current_app)
    backend = flush_impressions_task.get_backend()
    gone = False
    if backend.supports_get_result:
        try:
            return outcome_of_result(backend.get_result(result_id), current_app)
        except TaskResultDoesNotExist:
            # Kept no result (an RQ RESULT_TTL of 0 deletes a job as it finishes): the ledger
            # has the flush, if it ran.
            gone = True
    # Compared in UTC: under USE_TZ = False the ledger's naive times do not say which pass of an
    # hour a DST change repeats they were (pressed at 01:59:58 EDT, the flush of 01:00:10 EST was
    # not found for an hour; at 01:00:05 EST, one of 01:30 EDT was taken for it). The flush's id
    # starts with its UTC time (made a moment before started_at): the rows of the flushes since
    # the minute of the click, a few.
    since = utc(since)
    recent = Flush.objects.filter(id__gte=f"{since:%Y%m%dT%H%M}", finished_at__isnull=False)
    flush = min(
        (flush for flush in recent if started_utc(flush) >= since), key=started_utc, default=None
    )
    if flush is not None:
        return outcome_of_ledger(flush, current_app)
    if gone:
        return Outcome(
            True, False, gettext("The flush task is gone from the queue; see the ledger.")
        )
    return PENDING


def outcome_of_result(result, current_app=None):
    if result.status == TaskResultStatus.SUCCESSFUL:
        report = result.return_value
        flush = Flush.objects.filter(pk=report["flush_id"]).first()
        if flush is not None:
            return outcome_of_ledger(flush, current_app)
        return Outcome(
            True,
            True,
            gettext("Flush %(id)s: %(outcome)s.")
            % {"id": report["flush_id"], "outcome": report["outcome"]},
        )
    if result.status == TaskResultStatus.FAILED:
        error = result.errors[-1].exception_class_path if result.errors else "an error"
        return Outcome(
            True,
            False,
            gettext(
                "The flush failed (%(error)s); its impressions stay in Redis for the next flush."
                " The worker's log and the ledger say more."
            )
            % {"error": error},
        )
    return PENDING


def outcome_of_ledger(flush, current_app=None):
    """The message of a finished ledger row, linking to it."""
    url = reverse("admin:impressions_flush_change", args=[flush.pk], current_app=current_app)
    if flush.outcome == Flush.Outcome.FAILED:
        text = format_html(
            gettext('Flush <a href="{}">{}</a> failed: {}'), url, flush.pk, flush.error
        )
        return Outcome(True, False, text)
    if flush.outcome == Flush.Outcome.EMPTY:
        text = format_html(
            gettext('Flush <a href="{}">{}</a>: nothing was pending.'), url, flush.pk
        )
        return Outcome(True, True, text)
    dropped = ""
    if flush.impressions_dropped:
        dropped = " " + gettext("%(impressions)s dropped for %(objects)s deleted %(name)s.") % {
            "impressions": number_format(flush.impressions_dropped),
            "objects": number_format(flush.posts_dropped),
            "name": counted_plural(),
        }
    text = format_html(
        gettext('Flush <a href="{}">{}</a>: {} applied to {} in {}.{}'),
        url,
        flush.pk,
        impressions_text(flush.impressions_applied),
        counted_objects(flush.posts_updated),
        run_time_text(run_time(flush)),
        dropped,
    )
    return Outcome(True, True, text)
