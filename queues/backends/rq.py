"""RQ on a standalone Redis as a django.tasks backend: JSON jobs that call one fixed trampoline.

Every job RQ stores calls `run_task(task_path, args, kwargs)`; the trampoline imports the path and
runs it only if it is a django.tasks Task. The worker's job class refuses any job that names another
callable, so a job planted in Redis (`os.system`, a pickle) is never executed.
"""

import functools
import threading
import uuid

from django.tasks import TaskResultStatus
from django.tasks.base import TaskError
from django.tasks.exceptions import TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone

from ..cluster import ensure_not_cluster
from ..exceptions import RefusedJob
from ..execution import execute, load_task, new_result
from .base import QueueBackend, import_dependency

TRAMPOLINE = "queues.backends.rq.run_task"

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


def run_task(task_path, args, kwargs):
    """The only function an RQ job of ours calls: run a django.tasks Task by import path."""
    from rq import get_current_job

    job = get_current_job()
    task = load_task(task_path)
    backend = job.meta.get("backend", "default")
    result = new_result(task, job.id, args, kwargs, backend, enqueued_at=job.enqueued_at)
    try:
        return execute(result, worker_id=job.worker_name or "rq", sender=RQBackend)
    except Exception as error:
        # Kept so get_result() can name the exception class; RQ itself keeps only the traceback.
        kind = type(error)
        job.meta["exception_class"] = f"{kind.__module__}.{kind.__qualname__}"
        job.save_meta()
        raise


@functools.cache
def task_job_class():
    """The rq Job subclass our workers use; built lazily so this module imports without rq."""
    job_module = import_dependency("rq.job", "rq")

    class TaskJob(job_module.Job):
        """A Job that only ever calls the trampoline, with no callbacks or webhooks."""

        def refusal(self):
            if self.func_name != TRAMPOLINE or self.instance is not None:
                return f"job calls {self.func_name!r}, not {TRAMPOLINE}"
            names = (self._success_callback_name, self._failure_callback_name)
            if any(names) or self._stopped_callback_name:
                return "job carries callbacks"
            if self.webhooks:
                return "job carries webhooks"
            return None

        @property
        def func(self):
            if reason := self.refusal():
                raise RefusedJob(reason)
            return run_task

        # Callbacks are import paths too: never resolve them, whatever the job says.
        success_callback = failure_callback = stopped_callback = property(lambda self: None)

        def send_webhooks(self, status, *, exc_string=None):
            return None

    return TaskJob


class RQBackend(QueueBackend):
    """Tasks as RQ jobs on a standalone Redis; `runworker` runs them (with RQ's scheduler)."""

    # run_after is honoured through RQ's scheduled-job registry.
    supports_defer = True
    # Results live in Redis for RESULT_TTL seconds; any process can read them.
    supports_get_result = True

    option_defaults = {
        "URL": None,
        "CLUSTER": False,  # say True to declare a cluster endpoint, which is then refused
        "JOB_TIMEOUT": 600,
        "RESULT_TTL": 86400,
        "SOCKET_TIMEOUT": 5,
    }

    def __init__(self, alias, params):
        super().__init__(alias, params)
        if not self.options["URL"]:
            raise self.option_error("URL (the RQ Redis, from RQ_REDIS_URL) is required.")
        self.url = self.options["URL"]
        self._connection = None
        self._lock = threading.Lock()

    def check(self, **kwargs):
        from ..checks import check_rq_backend

        return check_rq_backend(self, deploy=False)

    @property
    def serializer(self):
        return import_dependency("rq.serializers", "rq").JSONSerializer

    def raw_connection(self):
        """The Redis client, without the cluster-mode probe (the probe itself uses it)."""
        with self._lock:
            if self._connection is None:
                redis = import_dependency("redis", "redis")
                timeout = self.options["SOCKET_TIMEOUT"]
                self._connection = redis.Redis.from_url(
                    self.url, socket_timeout=timeout, socket_connect_timeout=timeout
                )
        return self._connection

    def connection(self):
        """The Redis client, once this process has verified the server is not in cluster mode."""
        connection = self.raw_connection()
        ensure_not_cluster(connection, self.url, self.options["CLUSTER"])
        return connection

    def rq_queue(self, name):
        queue_module = import_dependency("rq.queue", "rq")
        return queue_module.Queue(
            name,
            connection=self.connection(),
            job_class=task_job_class(),
            serializer=self.serializer,
            default_timeout=self.options["JOB_TIMEOUT"],
        )

    def enqueue(self, task, args, kwargs):
        self.validate_task(task)
        result = new_result(task, uuid.uuid4().hex, args, kwargs, self.alias)
        queue = self.rq_queue(task.queue_name)
        job = queue.create_job(
            TRAMPOLINE,
            args=(task.module_path, result.args, result.kwargs),
            job_id=result.id,
            description=task.module_path,
            result_ttl=self.options["RESULT_TTL"],
            meta={"backend": self.alias},
        )
        if task.run_after is not None and task.run_after > timezone.now():
            queue.schedule_job(job, task.run_after)
        else:
            queue.enqueue_job(job)
        object.__setattr__(result, "enqueued_at", timezone.now())
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id):
        exceptions = import_dependency("rq.exceptions", "rq")
        try:
            job = task_job_class().fetch(
                result_id, connection=self.connection(), serializer=self.serializer
            )
        except exceptions.NoSuchJobError:
            raise TaskResultDoesNotExist(result_id) from None
        if job.func_name != TRAMPOLINE:
            raise TaskResultDoesNotExist(result_id)
        task_path, args, kwargs = job.args
        result = new_result(load_task(task_path), job.id, args, kwargs, self.alias, job.enqueued_at)
        rq_status = job.get_status()
        status = RQ_STATUS.get(getattr(rq_status, "value", rq_status), TaskResultStatus.READY)
        changes = {
            "status": status,
            "started_at": job.started_at,
            "last_attempted_at": job.started_at,
            "finished_at": job.ended_at,
        }
        if job.worker_name:
            result.worker_ids.append(job.worker_name)
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

    def make_worker(self, *, queues=None, burst=False, max_jobs=None):
        from ..workers.rq import RQWorkerRunner

        return RQWorkerRunner(
            self, queues=queues or sorted(self.queues), burst=burst, max_jobs=max_jobs
        )
