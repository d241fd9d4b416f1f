"""The RQ worker: probe the server, then RQ's SimpleWorker with our job class and the scheduler."""

import logging
import math

import redis
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends
from django.tasks.exceptions import InvalidTaskBackend
from django.utils import timezone
from rq import get_current_job
from rq.job import Job
from rq.timeouts import UnixSignalDeathPenalty
from rq.worker import SimpleWorker

from .. import liveness
from ..exceptions import RefusedJob
from ..execution import (
    TaskTimer,
    between_jobs,
    cancel_running_queries,
    discard_connections,
    execute,
    new_result,
    report_refusal,
)
from ..runner import stop_handlers
from . import jobs
from .backend import RQBackend

logger = logging.getLogger("queues.worker")


def job_backend(job):
    """The RQ backend a job of ours was enqueued through (its meta names the TASKS alias)."""
    alias = job.meta.get("backend", DEFAULT_TASK_BACKEND_ALIAS)
    try:
        backend = task_backends[alias]
    except InvalidTaskBackend:
        backend = None
    if not isinstance(backend, RQBackend):
        raise RefusedJob(f"job names the backend {alias!r}, which is not an RQ backend here")
    return backend


def run_task(task_path, args, kwargs):
    """The only function an RQ job of ours calls (jobs.TRAMPOLINE): run a django.tasks Task."""
    job = get_current_job()
    try:
        backend = job_backend(job)
        task = backend.load_task(task_path)
    except RefusedJob:
        job.retries_left = None  # a refusal is final: no retry would run it
        raise
    worker_id = job.worker_name or "rq"
    result = new_result(
        task,
        job.id,
        args,
        kwargs,
        backend.alias,
        enqueued_at=job.enqueued_at,
        worker_ids=jobs.attempt_workers(job),
    )
    # Saved before the task runs, so an attempt that times out (or dies) is counted too.
    job.meta["worker_ids"] = [*result.worker_ids, worker_id]
    job.save_meta()
    try:
        return execute(result, worker_id=worker_id, sender=RQBackend)
    except Exception as error:
        # Kept so get_result() can name the exception class; RQ itself keeps only the traceback.
        kind = type(error)
        job.meta["exception_class"] = f"{kind.__module__}.{kind.__qualname__}"
        job.save_meta()
        raise


class TaskJob(Job):
    """A Job that only ever calls the trampoline, with no callbacks or webhooks."""

    @property
    def func(self):
        if reason := jobs.refusal(self):
            raise RefusedJob(reason)
        return run_task

    # Callbacks are import paths too: never resolve them, whatever the job says.
    success_callback = failure_callback = stopped_callback = property(lambda self: None)

    def send_webhooks(self, status, *, exc_string=None):
        return None


class CancellingDeathPenalty(UnixSignalDeathPenalty):
    """RQ's SIGALRM timeout, which first cancels the job's running PostgreSQL query."""

    fired = False  # one job at a time per worker process: did its timeout fire?

    def handle_death_penalty(self, signum, frame):
        cancel_running_queries()
        type(self).fired = True
        super().handle_death_penalty(signum, frame)


class TaskWorker(SimpleWorker):
    """An rq SimpleWorker that logs one line per job and closes stale DB connections between."""

    # Tasks run in this process (no fork per job), so Django's connections are managed here.
    death_penalty_class = CancellingDeathPenalty

    def execute_job(self, job, queue):
        between_jobs()
        refusal = self._refusal(job)
        timer = TaskTimer(job.description if refusal is None else "-", job.id)
        self.death_penalty_class.fired = False
        if refusal is not None:
            job.retries_left = None  # RQ still records it in the failed registry, once
        try:
            with liveness.CLOCK.running():
                super().execute_job(job, queue)
        finally:
            between_jobs()
        status = getattr(job.get_status(refresh=True), "value", None)
        if status != "finished":
            discard_connections()  # a timed-out job may have left one mid-query
        if refusal is not None:
            alias = job.meta.get("backend", DEFAULT_TASK_BACKEND_ALIAS)
            report_refusal(RQBackend, alias, refusal)
            timer.log("refused", logging.ERROR, str(refusal))
        elif status == "finished":
            timer.log("succeeded")
        elif self.death_penalty_class.fired:
            timer.log(
                "timed-out",
                logging.ERROR,
                f"reason=JOB_TIMEOUT ({job.timeout} s) {self._attempt_detail(job, queue, status)}",
            )
        elif status in ("failed", "scheduled", "queued"):
            timer.log("failed", logging.ERROR, self._attempt_detail(job, queue, status))
        else:
            timer.log(str(status), logging.ERROR)

    @staticmethod
    def _attempt_detail(job, queue, status):
        """`attempt=n/m` and what follows: the next attempt's delay, or the failed registry."""
        attempt = len(jobs.attempt_workers(job))
        if status == "failed":
            return f"attempt={attempt}/{attempt} next=failed-registry"
        # RQ counted retries_left down when it re-scheduled the job: the next attempt is one of them.
        total = attempt + (job.retries_left or 0) + 1
        delay = 0
        if status == "scheduled":
            due = queue.scheduled_job_registry.get_scheduled_time(job)
            delay = max(0, math.ceil((due - timezone.now()).total_seconds()))
        return f"attempt={attempt}/{total} next_attempt_in={delay}s"

    def work(self, *args, **kwargs):
        # RQ installs its stop handlers only after registering the worker and starting its
        # scheduler. A stop arriving in between is remembered: the loop ends before its first
        # job, and the worker deregisters as on any clean stop.
        with stop_handlers(self._stop_before_loop):
            return super().work(*args, **kwargs)

    def _stop_before_loop(self, signum, frame):
        self._stop_requested = True

    def _shutdown(self):
        # An idle RQ worker stops by raising StopRequested from its signal handler. Should the
        # signal land where exceptions are swallowed (a __del__, an import's module-lock
        # callback), the flag still ends the loop at its next turn.
        self._stop_requested = True
        super()._shutdown()

    @staticmethod
    def _refusal(job):
        """The RefusedJob that stops `job` from running, or None (imports allowed modules only)."""
        try:
            if reason := jobs.refusal(job):
                return RefusedJob(reason)
            arguments = job.args
            if len(arguments) != 3 or not isinstance(arguments[0], str):
                return RefusedJob("job arguments are not (task path, args, kwargs)")
            job_backend(job).load_task(arguments[0])
        except RefusedJob as refused:
            return refused
        except Exception as error:  # undecodable data, a pickle: refused too
            return RefusedJob(f"job data cannot be read as JSON ({type(error).__name__})")
        return None


class RQWorker:
    """Checks the Redis is standalone, then runs an RQ worker over the backend's queues."""

    # The server is down or misaddressed: reported without a traceback.
    unreachable_errors = (redis.ConnectionError, redis.TimeoutError)

    def __init__(self, backend, *, queues=None, burst=False, max_jobs=None):
        self.backend = backend
        self.queue_names = list(queues or sorted(backend.queues))
        self.burst, self.max_jobs = burst, max_jobs

    def run(self):
        """The loop; returns the exit code (0 on a clean stop)."""
        connection = self.backend.connection()  # the cluster-mode probe runs before any write
        worker = TaskWorker(
            self.queue_names,
            connection=connection,
            job_class=TaskJob,
            serializer=jobs.SERIALIZER,
            default_result_ttl=self.backend.options["RESULT_TTL"],
        )
        logger.info("RQ worker %s on queue(s) %s", worker.name, ", ".join(self.queue_names))
        worker.work(burst=self.burst, max_jobs=self.max_jobs, with_scheduler=True)
        return 0
