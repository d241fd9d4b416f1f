"""The RQ worker: probe the server, then RQ's SimpleWorker with our job class and the scheduler."""

import logging

from .. import liveness
from ..backends.base import import_dependency
from ..backends.rq import task_job_class
from ..execution import TaskTimer, between_jobs, cancel_running_queries, discard_connections
from . import stop_handlers

logger = logging.getLogger("queues.worker")


def task_worker_class():
    """An rq SimpleWorker that logs one line per job and closes stale DB connections between."""
    rq_worker = import_dependency("rq.worker", "rq")
    rq_timeouts = import_dependency("rq.timeouts", "rq")

    class CancellingDeathPenalty(rq_timeouts.UnixSignalDeathPenalty):
        """RQ's SIGALRM timeout, which first cancels the job's running PostgreSQL query."""

        fired = False  # one job at a time per worker process: did its timeout fire?

        def handle_death_penalty(self, signum, frame):
            cancel_running_queries()
            type(self).fired = True
            super().handle_death_penalty(signum, frame)

    class TaskWorker(rq_worker.SimpleWorker):
        # Tasks run in this process (no fork per job), so Django's connections are managed here.
        death_penalty_class = CancellingDeathPenalty

        def execute_job(self, job, queue):
            between_jobs()
            refusal = self._refusal(job)
            timer = TaskTimer(job.description if refusal is None else "-", job.id)
            self.death_penalty_class.fired = False
            try:
                with liveness.CLOCK.running():
                    super().execute_job(job, queue)
            finally:
                between_jobs()
            status = getattr(job.get_status(refresh=True), "value", None)
            if status != "finished":
                discard_connections()  # a timed-out job may have left one mid-query
            if refusal:
                timer.log("refused", logging.ERROR, refusal)
            elif status == "finished":
                timer.log("succeeded")
            elif self.death_penalty_class.fired:
                timer.log("timed-out", logging.ERROR, f"reason=JOB_TIMEOUT ({job.timeout} s)")
            else:
                timer.log("failed" if status == "failed" else str(status), logging.ERROR)

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
            try:
                return job.refusal()
            except Exception as error:  # undecodable data, a pickle: refused too
                return f"job data cannot be read as JSON ({type(error).__name__})"

    return TaskWorker


class RQWorkerRunner:
    """Checks the Redis is standalone, then runs an RQ worker over the backend's queues."""

    def __init__(self, backend, *, queues, burst=False, max_jobs=None):
        self.backend, self.queue_names = backend, list(queues)
        self.burst, self.max_jobs = burst, max_jobs

    def run(self):
        connection = self.backend.connection()  # the cluster-mode probe runs before any write
        serializers = import_dependency("rq.serializers", "rq")
        worker = task_worker_class()(
            self.queue_names,
            connection=connection,
            job_class=task_job_class(),
            serializer=serializers.JSONSerializer,
            default_result_ttl=self.backend.options["RESULT_TTL"],
        )
        logger.info("RQ worker %s on queue(s) %s", worker.name, ", ".join(self.queue_names))
        worker.work(burst=self.burst, max_jobs=self.max_jobs, with_scheduler=True)
        return 0
