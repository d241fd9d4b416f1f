"""What our queue backends share: OPTIONS validation, retries, the task registry, the check hook."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from django.apps import apps
from django.core import checks
from django.tasks import Task, TaskResult
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import InvalidTask, InvalidTaskBackend

from redis_endpoints import redact_text

from .bounds import DOTTED_PATH, check_arguments, sample
from .exceptions import MalformedMessage, QueueConfigurationError, TaskNotAllowed
from .registry import discover_tasks, task_module_problems

# The longest retry delay: SQS delays a message 15 minutes at most, and a backoff past that is
# better served by a person looking at the failed registry or the DLQ.
MAX_RETRY_DELAY = 900


@dataclass(frozen=True)
class QueueStats:
    """The numbers of one queue of one backend, as `queue_stats`, /metrics and the admin show them."""

    backend: str  # the TASKS alias
    queue: str  # the RQ queue, or the SQS queue's name
    counts: dict[str, int | None]  # state -> number of jobs or messages (None: unknown), in order


# An OPTIONS rule: (the test of a value, what a good value looks like).
Rule = tuple[Callable[[Any], bool], str]
# A problem check() reports: (check id, message, hint).
Problem = tuple[str, str, str]


def whole_number(minimum: int, maximum: int | None = None) -> Callable[[Any], bool]:
    """An OPTIONS rule: a whole number (not a bool) from `minimum` to `maximum` (None: no limit)."""

    def valid(value: Any) -> bool:
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and minimum <= value
            and (maximum is None or value <= maximum)
        )

    return valid


def _module_names(value: Any) -> bool:
    return not isinstance(value, str) and all(
        isinstance(module, str) and DOTTED_PATH.fullmatch(f"{module}.x") for module in value
    )


class QueueBackend(BaseTaskBackend):
    """Base for the RQ and SQS backends: OPTIONS defaults and rules, reported by check().

    A bad OPTIONS entry does not stop the backend from being built (Django builds it when a module
    declares a task); check() reports every one, each with an id, and enqueue() and the worker
    refuse to run with any (QueueConfigurationError).
    """

    # OPTIONS keys every backend of ours understands, with their defaults; subclasses add theirs.
    option_defaults: dict[str, Any] = {
        "MAX_ATTEMPTS": 3,  # runs of a failing task, the first included
        "RETRY_DELAY": 10,  # seconds before the second run, doubling after each failure
        "TASK_MODULES": (),  # modules whose tasks are registered besides the apps' tasks modules
    }
    # key -> (test of a value, what a good value looks like); the only place the limits live.
    option_rules: dict[str, Rule] = {
        "MAX_ATTEMPTS": (whole_number(1, 100), "a whole number from 1 to 100"),
        "RETRY_DELAY": (
            whole_number(0, MAX_RETRY_DELAY),
            f"a whole number of seconds from 0 to {MAX_RETRY_DELAY}",
        ),
        "TASK_MODULES": (_module_names, "a list of module names (a.b.c)"),
    }
    # Dotted path of the class that runs this backend's tasks; `runworker` imports it. The backend
    # never imports its worker (the worker imports its backend).
    worker_class: str | None = None
    # What the backend's client raises when its server is down, misaddressed or refuses us.
    unreachable_errors: tuple[type[Exception], ...] = ()
    # The URL name of a dashboard of the backend's queues, when the project mounts one.
    dashboard_url_name: str | None = None

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        given = dict(self.options)
        self.option_problems = self._option_problems(given)
        # A bad value is replaced by its default, so that nothing trips over it before check().
        bad = {key for key, (valid, _) in self.option_rules.items() if key in given}
        bad = {key for key in bad if not self.option_rules[key][0](given[key])}
        self.options = {
            **self.option_defaults,
            **{key: value for key, value in given.items() if key not in bad},
        }
        self.options["TASK_MODULES"] = tuple(self.options["TASK_MODULES"])
        self._registry: dict[str, Task[Any, Any]] | None = None
        self._registry_lock = threading.RLock()

    def _option_problems(self, given: dict[str, Any]) -> list[Problem]:
        """(check id, message, hint) of each unknown key and each value that fails its rule."""
        where = f"TASKS[{self.alias!r}]['OPTIONS']"
        problems: list[Problem] = []
        unknown = sorted(set(given) - set(self.option_defaults))
        if unknown:
            problems.append(
                (
                    "queues.E004",
                    f"{where} has unknown key(s) {', '.join(unknown)}.",
                    f"{type(self).__name__} accepts: {', '.join(sorted(self.option_defaults))}.",
                )
            )
        for key, (valid, expected) in self.option_rules.items():
            if key in given and not valid(given[key]):
                problems.append(
                    (
                        "queues.E005",
                        # redacted: a URL's credentials are never printed
                        f"{where}: {key}={redact_text(repr(given[key]))} is not valid.",
                        f"Use {expected}.",
                    )
                )
        return problems

    def ensure_valid(self) -> None:
        """Raise QueueConfigurationError naming every OPTIONS problem (what check() reports)."""
        if self.option_problems:
            raise QueueConfigurationError(
                " ".join(f"{message} {hint}" for _, message, hint in self.option_problems)
            )

    @property
    def max_attempts(self) -> int:
        """Runs of a failing task, the first included (OPTIONS["MAX_ATTEMPTS"]).

        Public for tasks that must know whether a retry follows (`context.attempt` against it).
        """
        attempts: int = self.options["MAX_ATTEMPTS"]
        return attempts

    def retry_delay(self, attempt: int) -> int:
        """Seconds to wait after failed attempt `attempt` (1, 2, …): RETRY_DELAY, doubling, capped."""
        delay: int = self.options["RETRY_DELAY"]
        return min(MAX_RETRY_DELAY, int(delay * 2 ** (attempt - 1)))

    def task_registry(self) -> dict[str, Task[Any, Any]]:
        """{module_path: Task} this backend runs: the installed apps' `tasks` modules and the
        modules of TASK_MODULES, imported once (workers call it at start)."""
        with self._registry_lock:
            if self._registry is None:
                where = f"TASKS[{self.alias!r}]['OPTIONS']"
                self._registry = discover_tasks(self.options["TASK_MODULES"], where)
            return self._registry

    def load_task(self, path: object) -> Task[Any, Any]:
        """The registered Task named `path`; RefusedJob otherwise. Nothing is ever imported."""
        task = self.task_registry().get(path) if isinstance(path, str) else None
        if task is None:
            raise TaskNotAllowed(
                f"task {sample(path, 200)} is not registered (the installed apps' tasks modules and"
                " TASK_MODULES): nothing imported"
            )
        return task

    def task_as_enqueued(self, task: Task[Any, Any], queue_name: object) -> Task[Any, Any]:
        """The registered `task` (as its decorator made it) as it was enqueued: through this
        backend, on `queue_name`. A result's task then names where it went, as the Task that
        enqueue() was called on did (`.using(backend=…, queue_name=…)`): its get_backend() is
        this backend, so refresh() reads from it, not from the decorator's backend. A queue
        this backend does not have (a planted job's) leaves the decorator's."""
        changes: dict[str, Any] = {}
        if task.backend != self.alias:
            changes["backend"] = self.alias
        if queue_name != task.queue_name and queue_name in self.queues:
            changes["queue_name"] = queue_name
        if not changes:
            return task
        try:
            return replace(task, **changes)  # validated by this backend, as using() does
        except (InvalidTask, InvalidTaskBackend):
            return task

    def require_registered(self, task: Task[Any, Any]) -> None:
        """InvalidTask unless a worker will find `task` in its registry (at enqueue: @task
        validates while its module is imported, before the registry can be built)."""
        if task.module_path not in self.task_registry():
            raise InvalidTask(
                f"Task {task.module_path} is not registered with TASKS[{self.alias!r}]: define it"
                " in an installed app's tasks module, or list its module in OPTIONS"
                "['TASK_MODULES']; the workers run registered tasks only."
            )

    def bound_arguments(self, result: TaskResult[Any, Any]) -> None:
        """InvalidTask unless `result`'s arguments are within what a worker accepts
        (queues.bounds): refused here, rather than set aside by the worker."""
        try:
            check_arguments(result.args, result.kwargs)
        except MalformedMessage as error:
            raise InvalidTask(f"{result.task.module_path}: {error}.") from None

    def check(self, *, deploy: bool = False, **kwargs: Any) -> list[checks.CheckMessage]:
        """The settings' problems, found without network; with `deploy`, instead those found by
        reaching the server.

        django.tasks runs check() on every command; queues.checks adds check(deploy=True) to
        `check --deploy` for each backend whose check() found no error.
        """
        return [
            *super().check(**kwargs),
            *(
                checks.Error(message, hint=hint, id=id_)
                for id_, message, hint in self.option_problems
            ),
            *self._task_module_errors(),
            *self._app_errors(),
        ]

    def _app_errors(self) -> list[checks.CheckMessage]:
        """queues.E011: this app is not installed, so no runworker runs what the backend queues
        (a backend path in TASKS works without the app; its command does not)."""
        if apps.is_installed("queues"):
            return []
        return [
            checks.Error(
                f"TASKS[{self.alias!r}] is a backend of the queues app ({type(self).__name__})"
                " and 'queues' is not in INSTALLED_APPS: manage.py runworker, which runs its"
                " tasks, does not exist.",
                hint="Add 'queues' to INSTALLED_APPS (before 'django_rq').",
                id="queues.E011",
            )
        ]

    def _task_module_errors(self) -> list[checks.CheckMessage]:
        """queues.E010 for each TASK_MODULES entry a worker would register no task from.

        Builds before the task registry read TASK_MODULES as prefixes (["reports"] allowed every
        task under reports/): a project that keeps that form over an upgrade is told at its
        first command, not by every enqueue failing and every queued job refused.
        """
        where = f"TASKS[{self.alias!r}]['OPTIONS']['TASK_MODULES']"
        return [
            checks.Error(
                f"{where} lists {name!r}, {why}.",
                hint="List the modules that define the tasks (such as 'reports.jobs'): each is"
                " imported and its tasks registered; a name is not a prefix.",
                id="queues.E010",
            )
            for name, why in task_module_problems(self.options["TASK_MODULES"])
        ]
