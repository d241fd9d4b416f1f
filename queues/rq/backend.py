"""RQ on a standalone Redis as a django.tasks backend: JSON jobs that call one fixed trampoline."""

import uuid

from django.tasks import TaskResultStatus
from django.tasks.base import TaskError
from django.tasks.exceptions import TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone
from rq.exceptions import DeserializationError, NoSuchJobError
from rq.job import Retry
from rq.queue import Queue
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from ..base import QueueBackend, QueueStats, whole_number
from ..exceptions import MalformedMessage, RefusedJob
from ..execution import new_result
from . import jobs
from .checks import rq_backend_errors
from .cluster import ensure_not_cluster
from .connection import endpoint_url, get_connection, queue_config


class RQBackend(QueueBackend):
    """Tasks as RQ jobs on a standalone Redis; `runworker` runs them (with RQ's scheduler).

    The queues are TASKS' "QUEUES" (default: ["default"]), each an entry of django-rq's RQ_QUEUES,
    which alone says where their Redis is (queues.rq.connection).
    """

    # run_after is honoured through RQ's scheduled-job registry.
    supports_defer = True
    # Results live in Redis for RESULT_TTL seconds; any process can read them.
    supports_get_result = True

    worker_class = "queues.rq.worker.RQWorker"
    option_defaults = {
        **QueueBackend.option_defaults,
        "JOB_TIMEOUT": 600,  # seconds a task may run before RQ stops it (a failed attempt)
        "RESULT_TTL": 86400,  # seconds a finished task's result stays readable
    }
    option_rules = {
        **QueueBackend.option_rules,
        "JOB_TIMEOUT": (whole_number(1), "a whole number of seconds >= 1"),
        "RESULT_TTL": (whole_number(-1), "a whole number of seconds >= 0 (-1: kept for ever)"),
    }

    def check(self, *, deploy=False, **kwargs):
        if deploy:
            return rq_backend_errors(self, deploy=True)
        return [*super().check(**kwargs), *rq_backend_errors(self, deploy=False)]

    @property
    def connection_queue(self):
        """The queue whose RQ_QUEUES entry gives the connection (checks.py: all share one)."""
        return min(self.queues)

    @property
    def url(self):
        """The Redis URL RQ_QUEUES names for the backend's queues (None: it names none)."""
        config = queue_config(self.connection_queue)
        return None if config is None else endpoint_url(config)

    def raw_connection(self):
        """django-rq's Redis client, without the cluster-mode probe (the probe itself uses it)."""
        return get_connection(self.connection_queue, f"TASKS[{self.alias!r}]")

    def connection(self):
        """The Redis client, once this process has verified the server is not in cluster mode."""
        self.ensure_valid()
        connection = self.raw_connection()
        ensure_not_cluster(connection, self.url)
        return connection

    def ping(self):
        """Raise unless the RQ Redis answers PING (the readiness probe; no cluster probe)."""
        self.raw_connection().ping()

    def rq_queue(self, name):
        return Queue(
            name,
            connection=self.connection(),
            serializer=jobs.SERIALIZER,
            default_timeout=self.options["JOB_TIMEOUT"],
        )

    def enqueue(self, task, args, kwargs):
        self.ensure_valid()
        self.validate_task(task)
        self.require_registered(task)
        result = new_result(task, uuid.uuid4().hex, args, kwargs, self.alias)
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
        if task.run_after is not None and task.run_after > timezone.now():
            queue.schedule_job(job, task.run_after)
        else:
            queue.enqueue_job(job)
        object.__setattr__(result, "enqueued_at", timezone.now())
        task_enqueued.send(type(self), task_result=result)
        return result

    def retry_policy(self):
        """RQ's Retry for MAX_ATTEMPTS runs, RETRY_DELAY doubling; None for a single attempt.

        RQ keeps the countdown on the job: after the last attempt the job lands in its failed
        registry, where a requeue (django-rq's dashboard) gives it one more attempt.
        """
        retries = self.max_attempts - 1
        if not retries:
            return None
        return Retry(max=retries, interval=[self.retry_delay(n) for n in range(1, retries + 1)])

    def stats(self):
        """Jobs queued, scheduled (run_after or a retry's delay), started and failed, per queue.

        Read-only: RQ's registry counts would first clean up (write) the registries.
        """
        connection = self.raw_connection()
        rows = []
        for name in sorted(self.queues):
            queue = Queue(name, connection=connection, serializer=jobs.SERIALIZER)
            registries = {
                "scheduled": ScheduledJobRegistry(queue=queue),
                "started": StartedJobRegistry(queue=queue),
                "failed": FailedJobRegistry(queue=queue),
            }
            counts = {"queued": queue.count}
            counts.update(
                (state, registry.get_job_count(cleanup=False))
                for state, registry in registries.items()
            )
            rows.append(QueueStats(self.alias, name, counts))
        return rows

    def get_result(self, result_id):
        try:
            # Read only, within bounds: its function is never resolved here, and its task path
            # is looked up in the registry, never imported.
            job = jobs.BoundedJob.fetch(
                result_id, connection=self.connection(), serializer=jobs.SERIALIZER
            )
            if job.unreadable or job.func_name != jobs.TRAMPOLINE:
                raise TaskResultDoesNotExist(result_id)
            jobs.check_job(job, self.max_attempts)
            task_path, args, kwargs = job.args
            task = self.load_task(task_path)
        except (NoSuchJobError, MalformedMessage, RefusedJob, DeserializationError):
            raise TaskResultDoesNotExist(result_id) from None
        result = new_result(
            task,
            job.id,
            args,
            kwargs,
            self.alias,
            job.enqueued_at,
            worker_ids=jobs.attempt_workers(job),
        )
        status = jobs.task_status(job)
        changes = {
            "status": status,
            "started_at": job.started_at,
            "last_attempted_at": job.started_at,
            "finished_at": job.ended_at,
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
