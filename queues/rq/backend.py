"""RQ on a standalone Redis as a django.tasks backend: JSON jobs that call one fixed trampoline."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from typing import Any

import redis
from django.core.checks import CheckMessage
from django.tasks import Task, TaskResult, TaskResultStatus
from django.tasks.base import TaskError
from django.tasks.exceptions import TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone
from rq.exceptions import DeserializationError, NoSuchJobError
from rq.job import Retry
from rq.queue import Queue
from rq.registry import (
    BaseRegistry,
    FailedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)

from redis_endpoints import once_more_when_demoted

from ..base import QueueBackend, QueueStats, Rule, whole_number
from ..bounds import check_id
from ..exceptions import MalformedMessage, QueueConfigurationError, RefusedJob
from ..execution import new_result
from ..times import aware
from . import jobs
from .checks import no_queue_message, rq_backend_errors
from .cluster import ensure_not_cluster
from .connection import endpoint_url, get_connection, queue_config


class RQBackend(QueueBackend):
    """Tasks as RQ jobs on a standalone Redis; `runworker` runs them (with RQ's scheduler).

    The queues are TASKS' "QUEUES" (default: ["default"]), each an entry of django-rq's RQ_QUEUES,
    which alone says where their Redis is (queues.rq.connection).
    """

    # run_after is honoured through RQ's scheduled-job registry.
    supports_defer = True
    # `async def` tasks: the worker runs the coroutine in an event loop of its own (as Django's
    # Task.call does), and stops it at an await on a timeout (queues.execution.AsyncCall).
    supports_async_task = True
    # Results live in Redis for RESULT_TTL seconds; any process can read them.
    supports_get_result = True

    worker_class: str | None = "queues.rq.worker.RQWorker"
    unreachable_errors: tuple[type[Exception], ...] = (redis.RedisError,)
    # django-rq's, through queues.rq.dashboard (the project's urls mount it in that namespace).
    dashboard_url_name: str | None = "django_rq:home"
    option_defaults: dict[str, Any] = {
        **QueueBackend.option_defaults,
        "JOB_TIMEOUT": 600,  # seconds a task may run before RQ stops it (a failed attempt)
        "RESULT_TTL": 86400,  # seconds a finished task's result stays readable
    }
    option_rules: dict[str, Rule] = {
        **QueueBackend.option_rules,
        "JOB_TIMEOUT": (whole_number(1), "a whole number of seconds >= 1"),
        "RESULT_TTL": (whole_number(-1), "a whole number of seconds >= 0 (-1: kept for ever)"),
    }

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        # As given: Django's set() of a string is its letters (queues.E013).
        self.queues_setting = params.get("QUEUES")

    def check(self, *, deploy: bool = False, **kwargs: Any) -> list[CheckMessage]:
        found: list[CheckMessage] = rq_backend_errors(self, deploy=deploy)
        return found if deploy else [*super().check(**kwargs), *found]

    @property
    def connection_queue(self) -> str:
        """The queue whose RQ_QUEUES entry gives the connection (checks.py: all share one)."""
        if problem := no_queue_message(self):  # queues.E013
            raise QueueConfigurationError(problem)
        return min(self.queues)

    @property
    def url(self) -> str | None:
        """The Redis URL RQ_QUEUES names for the backend's queues (None: it names none)."""
        config = queue_config(self.connection_queue)
        url: str | None = None if config is None else endpoint_url(config)
        return url

    def raw_connection(self) -> redis.Redis:
        """django-rq's Redis client, without the cluster-mode probe (the probe itself uses it)."""
        return get_connection(self.connection_queue, f"TASKS[{self.alias!r}]")

    def connection(self) -> redis.Redis:
        """The Redis client, once this process has verified the server is not in cluster mode."""
        self.ensure_valid()
        connection = self.raw_connection()
        ensure_not_cluster(connection, self.url)
        return connection

    def ping(self) -> None:
        """Raise unless the RQ Redis answers PING (the readiness probe; no cluster probe)."""
        self.raw_connection().ping()

    def rq_queue(self, name: str) -> Queue:
        """The RQ queue `name` on the verified connection, with the JSON serializer."""
        return Queue(
            name,
            connection=self.connection(),
            serializer=jobs.SERIALIZER,
            default_timeout=self.options["JOB_TIMEOUT"],
        )

    def enqueue(
        self, task: Task[Any, Any], args: Sequence[Any], kwargs: dict[str, Any]
    ) -> TaskResult[Any, Any]:
        self.ensure_valid()
        self.validate_task(task)
        self.require_registered(task)
        result: TaskResult[Any, Any] = new_result(task, uuid.uuid4().hex, args, kwargs, self.alias)
        self.bound_arguments(result)
        queue = self.rq_queue(task.queue_name)
        job = queue.create_job(
            jobs.TRAMPOLINE,
            args=jobs.trampoline_arguments(task, result),
            job_id=result.id,
            description=task.module_path,
            result_ttl=self.options["RESULT_TTL"],
            meta={"backend": self.alias},
            retry=self.retry_policy(),
        )
        if task.run_after is not None and aware(task.run_after) > aware(timezone.now()):
            # Aware (RQ misreads a naive one in DST zones), and on the server's clock, which
            # the scheduler reads: a delay counted on this host's would move with its drift.
            run_after = jobs.on_server_clock(queue.connection, aware(task.run_after))
            push = functools.partial(queue.schedule_job, job, run_after)
        else:
            push = functools.partial(queue.enqueue_job, job)
        # A failover's demoted primary refuses every write (none made): once more, on a new
        # connection, which reaches the new primary.
        once_more_when_demoted(queue.connection, push)
        object.__setattr__(result, "enqueued_at", timezone.now())
        task_enqueued.send(type(self), task_result=result)
        return result

    def retry_policy(self) -> Retry | None:
        """RQ's Retry for MAX_ATTEMPTS runs, RETRY_DELAY doubling; None for a single attempt.

        RQ keeps the countdown on the job: after the last attempt the job lands in its failed
        registry, where a requeue (django-rq's dashboard) gives it one more attempt.
        """
        retries = self.max_attempts - 1
        if not retries:
            return None
        return Retry(max=retries, interval=[self.retry_delay(n) for n in range(1, retries + 1)])

    def stats(self) -> list[QueueStats]:
        """Jobs queued, scheduled (run_after or a retry's delay), started and failed, per queue.

        Read-only: RQ's registry counts would first clean up (write) the registries. On the
        verified connection: a cluster-mode server is refused saying so, not with a MOVED error.
        """
        connection = self.connection()
        rows: list[QueueStats] = []
        for name in sorted(self.queues):
            queue = Queue(name, connection=connection, serializer=jobs.SERIALIZER)
            registries: dict[str, BaseRegistry] = {
                "scheduled": ScheduledJobRegistry(queue=queue),  # type: ignore[no-untyped-call]
                "started": StartedJobRegistry(queue=queue),
                "failed": FailedJobRegistry(queue=queue),
            }
            counts: dict[str, int | None] = {"queued": queue.count}
            counts.update(
                (state, registry.get_job_count(cleanup=False))
                for state, registry in registries.items()
            )
            rows.append(QueueStats(self.alias, name, counts))
        return rows

    def get_result(self, result_id: str) -> TaskResult[Any, Any]:
        try:
            # An id no job of ours has (a URL's, a form's) is no result: RQ would raise ValueError.
            check_id(result_id)
            # Read only, within bounds: its function is never resolved here, and its task path
            # is looked up in the registry, never imported.
            job = jobs.fetch_bounded(result_id, self.connection())
            if job.unreadable or job.func_name != jobs.TRAMPOLINE:
                raise TaskResultDoesNotExist(result_id)
            jobs.check_job(job, self.max_attempts)
            task_path, args, kwargs = job.args
            task = self.task_as_enqueued(self.load_task(task_path), job.origin)
        except (NoSuchJobError, MalformedMessage, RefusedJob, DeserializationError):
            raise TaskResultDoesNotExist(result_id) from None
        result: TaskResult[Any, Any] = new_result(
            task,
            job.id,
            args,
            kwargs,
            self.alias,
            jobs.enqueued_at(job),
            worker_ids=jobs.attempt_workers(job),
        )
        status = jobs.task_status(job)
        changes: dict[str, Any] = {
            "status": status,
            "started_at": jobs.task_time(job.started_at),
            "last_attempted_at": jobs.task_time(job.started_at),
            "finished_at": jobs.task_time(job.ended_at),
        }
        if status == TaskResultStatus.SUCCESSFUL:
            changes["_return_value"] = job.return_value()
        elif status == TaskResultStatus.FAILED:
            result.errors.append(
                TaskError(
                    exception_class_path=job.meta.get("exception_class", "builtins.Exception"),
                    traceback=getattr(job.latest_result(), "exc_string", None) or "",
                )
            )
        for name, value in changes.items():
            object.__setattr__(result, name, value)
        return result
