"""The numbers of every task backend's queues, for `queue_stats`, the admin page and /metrics."""

from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.tasks import task_backends
from django.tasks.backends.dummy import DummyBackend
from django.utils.translation import gettext

from redis_endpoints import redact_text


@dataclass
class BackendStats:
    """One TASKS alias: its queues' numbers, or why they could not be read."""

    alias: str
    backend: str  # the backend's class name
    queues: list = field(default_factory=list)  # [QueueStats]
    error: str | None = None  # the server could not be read
    in_process: bool = False  # no queue at all (Django's immediate and dummy backends)
    # What such a backend does with tasks, for the pages that list it: the dummy one runs none.
    in_process_note: str = ""


def backend_stats(alias):
    """The BackendStats of TASKS[alias]; a backend without stats() has no queue."""
    backend = task_backends[alias]
    found = BackendStats(alias, type(backend).__name__)
    if not hasattr(backend, "stats"):
        found.in_process = True
        found.in_process_note = (
            gettext("stores tasks and never runs them: no queue")
            if isinstance(backend, DummyBackend)
            else gettext("runs tasks in-process: no queue")
        )
        return found
    try:
        found.queues = backend.stats()
    except (*getattr(backend, "unreachable_errors", ()), OSError) as error:
        found.error = f"{type(error).__name__}: {redact_text(str(error))}"
    except ImproperlyConfigured as error:  # e.g. RQ on a cluster-mode server
        found.error = redact_text(str(error))
    return found


def all_backend_stats():
    """BackendStats of every TASKS alias, in settings order."""
    return [backend_stats(alias) for alias in settings.TASKS]


def describe(counts):
    """`state=number …` for one queue's counts (`-` where a number is unknown)."""
    return " ".join(f"{state}={'-' if n is None else n}" for state, n in counts.items())
