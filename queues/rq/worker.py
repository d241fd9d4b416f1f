"""The RQ worker: probe the server, then RQ's SimpleWorker with our job class and the scheduler."""

import contextlib
import datetime
import logging
import math
import os
import signal
import time

import redis
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends
from django.tasks.exceptions import InvalidTaskBackend
from redis.exceptions import NoPermissionError, ResponseError
from rq import Queue, get_current_job, worker_registration
from rq.exceptions import InvalidJobOperation, StopRequested
from rq.job import JobStatus
from rq.scheduler import RQScheduler
from rq.timeouts import UnixSignalDeathPenalty
from rq.worker import SimpleWorker

from redis_endpoints import demoted_primary, redact_text, redacting_logger

from .. import liveness
from ..bounds import JOB_ID, MAX_NAME_LENGTH
from ..exceptions import ForcedStop, MalformedMessage, QueueConfigurationError, RefusedJob
from ..execution import (
    QueryWatchdog,
    TaskTimer,
    between_jobs,
    cancel_running_queries,
    discard_connections,
    execute,
    interrupt,
    new_result,
    report_refusal,
)
from ..runner import STOP_SIGNALS, stop_handlers, stop_with_parent
from . import jobs
from .backend import RQBackend
from .connection import refusal_remedy

logger = redacting_logger("queues.worker")
# Seconds RQ allows a refused job, which only raises its refusal.
REFUSED_JOB_TIMEOUT = 60
# Seconds the worker's pubsub thread (its channel: RQ's stop-job and shutdown commands) waits for
# a message before it looks at its stop flag again. RQ waits 60; since redis-py 8.2,
# PubSubWorkerThread.stop() waits for the thread, so a stop took up to a minute.
PUBSUB_WAKE = 1
# What a Redis outage raises (a restart, a failover, a partition; AuthenticationError is one too).
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)
# Seconds between tries while Redis does not answer: 1, doubling to this (as the SQS worker).
REDIS_RETRY_MAX = 30
# Seconds between two looks at the stop flag while a try is waited for.
STOP_CHECK = 0.2
# Seconds an idle worker waits for a job at a time; between two waits it looks whether its
# scheduler process still runs (TaskWorker.keep_a_scheduler). RQ waits 405 s.
SCHEDULER_CHECK = 5


def redis_failed(error, connection):
    """Whether `error` is a Redis outage (REDIS_DOWN) or a failover's demoted primary. The
    latter's idle connections are dropped: the next ones are opened to whatever the endpoint
    names by then (the new primary)."""
    if isinstance(error, REDIS_DOWN):
        return True
    # It answers a command blocked in it (RQ's wait for jobs) UNBLOCKED, any write READONLY
    # (redis-py's Sentinel client takes both for a ConnectionError).
    demoted = isinstance(error, ResponseError) and demoted_primary(error)
    if demoted:
        connection.connection_pool.disconnect(inuse_connections=False)
    return demoted


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
        task = backend.task_as_enqueued(backend.load_task(task_path), job.origin)
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
        enqueued_at=jobs.enqueued_at(job),
        worker_ids=jobs.attempt_workers(job),
    )
    # Saved before the task runs, so an attempt that times out (or dies) is counted too.
    job.meta["worker_ids"] = [*result.worker_ids, worker_id]
    job.save_meta()
    try:
        return execute(result, worker_id=worker_id, sender=RQBackend)
    except Exception as error:
        # Kept so get_result() can name the exception class; RQ itself keeps only the traceback.
        # The task's own, as execute() noted it: a sys.exit()'s SystemExit, not its TaskExited.
        kind = type(error)
        job.meta["exception_class"] = (
            result.errors[-1].exception_class_path
            if result.errors
            else f"{kind.__module__}.{kind.__qualname__}"
        )
        job.save_meta()
        raise


def refusal_alias(job):
    """The TASKS alias a job names, fit for a metric label (the default alias otherwise)."""
    alias = job.meta.get("backend")
    if isinstance(alias, str) and len(alias) <= MAX_NAME_LENGTH:
        return alias
    return DEFAULT_TASK_BACKEND_ALIAS


class TaskJob(jobs.BoundedJob):
    """A Job that only ever calls the trampoline, with no callbacks or webhooks."""

    refused = None  # the worker's reason not to run this job (TaskWorker._refusal), or None

    @property
    def func(self):
        if self.refused is not None:
            raise RefusedJob(str(self.refused))
        if self.unreadable:
            raise RefusedJob(self.unreadable)
        if reason := jobs.refusal(self):
            raise RefusedJob(reason)
        return run_task

    # Callbacks are import paths too: never resolve them, whatever the job says.
    success_callback = failure_callback = stopped_callback = property(lambda self: None)

    def send_webhooks(self, status, *, exc_string=None):
        return None

    def retry(self, queue, pipeline):
        # RQ's, with the next attempt's delay on the server's clock, which the scheduler reads
        # (jobs.server_now), not on this worker's.
        interval = self.get_retry_interval()
        if not interval:
            return super().retry(queue, pipeline)
        self.retries_left -= 1
        due = jobs.server_now(self.connection) + datetime.timedelta(seconds=interval)
        self.set_status(JobStatus.SCHEDULED)
        queue.schedule_job(self, due, pipeline=pipeline)
        self.log.info("Job %s: retry due at %s, %s left", self.id, due, self.retries_left)
        return None


class CancellingDeathPenalty(UnixSignalDeathPenalty):
    """RQ's SIGALRM timeout, which first cancels the job's running PostgreSQL query."""

    fired = False  # one job at a time per worker process: did its timeout fire?
    watchdog = None  # its QueryWatchdog, while it runs

    def setup_death_penalty(self):
        super().setup_death_penalty()
        self.watchdog = QueryWatchdog(self._timeout)

    def cancel_death_penalty(self):
        super().cancel_death_penalty()  # the alarm disarmed before the wait for a cancel under way
        if self.watchdog is not None:
            self.watchdog.stop()

    def handle_death_penalty(self, signum, frame):
        cancel_running_queries()
        type(self).fired = True
        try:
            super().handle_death_penalty(signum, frame)
        except self._exception as error:
            interrupt(error)  # raised on here, or in an async task's coroutine at its await


class TaskWorker(SimpleWorker):
    """An rq SimpleWorker that logs one line per job and closes stale DB connections between."""

    # Tasks run in this process (no fork per job), so Django's connections are managed here.
    death_penalty_class = CancellingDeathPenalty
    burst = False  # set by work()
    # What ended RQ's loop other than a stop, a burst's end or --max-jobs (RQ logs it and returns).
    loop_error = None
    # RQ's is a property (worker_ttl - 15 s); each wait's end is a heartbeat, which looks at the
    # scheduler.
    dequeue_timeout = SCHEDULER_CHECK
    scheduler_reported = None  # the dead scheduler process last logged
    # A second stop signal arrived (request_force_stop): RQ's loop may still return normally.
    forced_stop = False

    def __init__(self, *args, **kwargs):
        # RQ would log each job's description, which a planted job sets to any text; our one
        # line per job names the task path once it is checked.
        kwargs.setdefault("log_job_description", False)
        super().__init__(*args, **kwargs)
        # RQ's own lines (a failed task's traceback among them) are redacted as ours are.
        self.log = redacting_logger(self.log.name)

    def _set_ip_address(self, connection):
        # RQ before 3.0 finds its address in CLIENT LIST, which is @dangerous: under the ACL of
        # queues.E003's hint each start was refused (an ACL LOG entry, a warning, the address
        # "unknown"). CLIENT INFO (@connection, Redis 6.2) answers for this connection only, as
        # RQ 3.0 asks; RQ's own way on an older server.
        try:
            connection.client_setname(self.name)
            self.ip_address = str(connection.client_info()["addr"])
        except ResponseError:
            super()._set_ip_address(connection)

    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string="", **kwargs):
        # The traceback RQ keeps in Redis: get_result() and the dashboard show it.
        return super().handle_job_failure(
            job, queue, started_job_registry, exc_string=redact_text(exc_string), **kwargs
        )

    def request_force_stop(self, signum, frame):
        """RQ's cold shutdown, its SystemExit a ForcedStop: raised inside the running task (this
        worker runs tasks in its own process), it stops the worker, where the task's own
        SystemExit (sys.exit()) only fails the task's attempt (queues.execution.execute)."""
        try:
            super().request_force_stop(signum, frame)
        except SystemExit:
            # RQ's SystemExit() says 0: `runworker` exited 0 after a cold shutdown outside a task,
            # and, as RQ's own except takes it inside one, after one that cut a task short too.
            # Exit 1 as the SQS worker does (a restart policy takes 0 for a clean stop).
            self.forced_stop = True
        else:
            return  # the same stop signal arriving twice
        interrupt(ForcedStop(1))  # raised here, or in an async task's coroutine

    def execute_job(self, job, queue):
        """Run one job; whatever it carries or raises stays with it (the loop goes on)."""
        try:
            self._execute_job(job, queue)
        except StopRequested:
            raise
        except Exception as error:
            shown_id = job.id if JOB_ID.fullmatch(job.id) else "-"
            if not redis_failed(error, self.connection):
                # Not BaseException: a stop (SystemExit, KeyboardInterrupt) must still stop.
                # RQ's registry maintenance moves a job left started to the failed registry.
                logger.exception("Handling job %s failed", shown_id)
                return
            # Its outcome is not recorded; the loop's next step waits for Redis (one line here).
            logger.error(
                "Handling job %s failed: Redis failed (%s: %s)",
                shown_id,
                type(error).__name__,
                error,
            )

    def _execute_job(self, job, queue):
        between_jobs()
        refusal = self._refusal(job)
        if job.unreadable:
            # Written again with RQ's defaults, so that RQ (and the dashboard) can read it.
            job.connection.delete(job.key)
            job.origin = queue.name
            job.save()
        task_path = job.args[0] if refusal is None else "-"
        timer = TaskTimer(task_path, job.id if JOB_ID.fullmatch(job.id) else "-")
        self.death_penalty_class.fired = False
        # Ours to decide, not the job's: a planted timeout or TTL could be any number.
        job.failure_ttl = job.ttl = None  # RQ's defaults
        if refusal is not None:
            job.refused = refusal  # RQ calls job.func: it raises this instead
            job.retries_left = None  # RQ still records it in the failed registry, once
            job.timeout, job.result_ttl = REFUSED_JOB_TIMEOUT, None
        else:
            backend = job_backend(job)
            job.timeout = backend.options["JOB_TIMEOUT"]
            job.result_ttl = backend.options["RESULT_TTL"]
        try:
            with liveness.CLOCK.running():
                super().execute_job(job, queue)
        finally:
            between_jobs()
        status = self._status_after(job)
        if status != "finished":
            discard_connections()  # a timed-out job may have left one mid-query
        if refusal is not None:
            report_refusal(RQBackend, refusal_alias(job), refusal)
            timer.log("refused", logging.ERROR, reason=refusal)
        elif status == "finished":
            timer.log("succeeded")
        elif self.death_penalty_class.fired:
            timer.log(
                "timed-out",
                logging.ERROR,
                reason=f"JOB_TIMEOUT ({job.timeout} s)",
                **self._attempt_details(job, queue, status),
            )
        elif status in ("failed", "scheduled", "queued"):
            timer.log("failed", logging.ERROR, **self._attempt_details(job, queue, status))
        else:
            timer.log(str(status), logging.ERROR)

    @staticmethod
    def _status_after(job):
        """The job's RQ status once it ran: "finished" for a job kept 0 s (RESULT_TTL 0), which
        RQ deletes as it finishes (only a success is deleted: a failure is kept failure_ttl)."""
        try:
            return getattr(job.get_status(refresh=True), "value", None)
        except InvalidJobOperation:
            if job.result_ttl != 0:
                raise
            return "finished"

    @staticmethod
    def _attempt_details(job, queue, status):
        """attempt="n/m" and what follows: the next attempt's delay, or the failed registry."""
        attempt = len(jobs.attempt_workers(job))
        if status == "failed":
            return {"attempt": f"{attempt}/{attempt}", "next": "failed-registry"}
        # RQ counted retries_left down when it re-scheduled the job: the next attempt is one of them.
        total = attempt + (job.retries_left or 0) + 1
        delay = 0
        if status == "scheduled":
            due = queue.scheduled_job_registry.get_scheduled_time(job)
            delay = max(0, math.ceil((due - jobs.server_now(queue.connection)).total_seconds()))
        return {"attempt": f"{attempt}/{total}", "next_attempt_in": f"{delay}s"}

    def work(self, *args, **kwargs):
        # RQ installs its stop handlers only after registering the worker and starting its
        # scheduler. A stop arriving in between is remembered: the loop ends before its first
        # job, and the worker deregisters as on any clean stop.
        self.burst = kwargs.get("burst", False)
        with stop_handlers(self._stop_before_loop):
            return super().work(*args, **kwargs)

    # The steps of RQ's loop that talk to Redis outside a job. RQ waits out a ConnectionError only
    # in its wait for jobs; anywhere else (the heartbeat after each job, the suspension check, the
    # registries' maintenance), and a TimeoutError anywhere, ended the worker. Each is now tried
    # again until Redis answers.

    def check_for_suspension(self, burst):
        self._until_redis_answers(super().check_for_suspension, burst)

    def run_maintenance_tasks(self):
        # Ours first: RQ's own restart of a dead scheduler (acquire_locks(auto_start=True)) then
        # finds it running, or finds none of its locks its own (take_scheduler_locks).
        self.keep_a_scheduler()
        self._until_redis_answers(super().run_maintenance_tasks)

    def heartbeat(self, timeout=None, pipeline=None):
        if pipeline is not None:  # only queued: the pipeline's caller sends it
            return super().heartbeat(timeout, pipeline)
        registered = self._until_redis_answers(self._heartbeat_and_look, timeout)
        if not registered and self.birth_date is not None:  # registered once, forgotten since
            self._until_redis_answers(self.register_again)
        self.keep_a_scheduler()

    def _heartbeat_and_look(self, timeout):
        """RQ's heartbeat (its HSET and EXPIREs in one round trip, not three), and whether the
        worker's key still holds its registration: not once the server came back from an outage
        without its data (a restart without persistence, a node replaced), where the HSET made
        the key anew with the heartbeat's field alone."""
        with self.connection.pipeline(transaction=False) as pipeline:
            super().heartbeat(timeout, pipeline)
            pipeline.hexists(self.key, "birth")
            return pipeline.execute()[-1]

    def register_again(self):
        """Register this worker again, with its birth and state (RQ's register_birth refuses a
        key that exists). RQ's heartbeats only extend the key: a worker its server forgot stayed
        out of `rq:workers` for the rest of its life, the dashboard listing no worker and its
        `rq_workers` metric saying 0."""
        with self.connection.pipeline() as pipeline:
            pipeline.hset(self.key, mapping=self.serialize())
            worker_registration.register(self, pipeline)
            pipeline.expire(self.key, self.worker_ttl + 60)
            pipeline.execute()
        logger.warning("RQ worker: Redis had lost this worker's registration; registered again")

    def keep_a_scheduler(self):
        """Start a scheduler if none runs here: RQ does so only at its maintenance, every 10
        minutes. Its process killed outright (SIGKILL, the OOM killer), every deferred task (the
        impressions' flush) waited that long, nothing logged; and a worker whose scheduler lock
        another held took it over, once released or lapsed, only then. One SET NX per queue, at
        each heartbeat."""
        scheduler = self.scheduler
        if scheduler is None or self.burst or self._stop_requested:
            return
        process = scheduler._process
        if process is not None and process.is_alive():
            return
        self._until_redis_answers(take_scheduler_locks, scheduler)
        if process is not None and process is not self.scheduler_reported:
            self.scheduler_reported = process
            logger.error(
                "RQ scheduler: its process %s died (exit code %s); %s",
                process.pid,
                process.exitcode,
                "starting another"
                if scheduler.acquired_locks
                else "another worker's scheduler holds its queues' locks now",
            )
        if scheduler.acquired_locks:
            start_scheduler(scheduler)

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        return self._until_redis_answers(
            super().dequeue_job_and_maintain_ttl, timeout, max_idle_time
        )

    def _until_redis_answers(self, step, *args):
        """step(*args), tried again while Redis is down: 1 s, doubling to REDIS_RETRY_MAX; a
        line is logged at each failure and once it answers again. A stop still stops (RQ's
        StopRequested, raised here once requested). A burst reports the outage instead
        (runworker exits 1), as the SQS worker does; so does any other error."""
        wait, failed = 1, False
        while True:
            try:
                answer = step(*args)
            except (StopRequested, SystemExit, KeyboardInterrupt):
                raise
            except Exception as error:
                if self.burst or not redis_failed(error, self.connection):
                    self.loop_error = error
                    raise
                failed = True
                logger.warning(
                    "RQ worker: Redis failed (%s: %s); trying again in %d s",
                    type(error).__name__,
                    error,
                    wait,
                )
                self._sleep_unless_stopped(wait)
                wait = min(wait * 2, REDIS_RETRY_MAX)
            else:
                # A burst's error that RQ's own dequeue loop caught and waited out is no longer
                # what ended the loop.
                self.loop_error = None
                if failed:
                    logger.warning("RQ worker: Redis answers again; the worker goes on")
                return answer

    def _sleep_unless_stopped(self, seconds):
        deadline = time.monotonic() + seconds
        while not self._stop_requested and time.monotonic() < deadline:
            time.sleep(min(STOP_CHECK, max(0, deadline - time.monotonic())))
        if self._stop_requested:
            raise StopRequested

    def set_shutdown_requested_date(self):
        # Called by RQ's stop handler while a job runs: a Redis outage must not make the stop
        # raise into the task. The date is only shown by the dashboard.
        with contextlib.suppress(*REDIS_DOWN):
            super().set_shutdown_requested_date()

    def _stop_before_loop(self, signum, frame):
        self._stop_requested = True

    def teardown(self):
        # RQ's stop handler raises wherever the main thread is: between a command sent and its
        # reply read, that connection went back to the pool with the reply in flight, and the
        # goodbye's transaction would read it ("Wrong number of response items"). Idle
        # connections are dropped first; the goodbye opens a fresh one.
        if not self.is_horse:
            self.connection.connection_pool.disconnect(inuse_connections=False)
        try:
            super().teardown()
        except Exception as error:
            if not redis_failed(error, self.connection):
                raise
            # Stopping while Redis is down: the worker's key expires on its own (RQ's worker TTL).
            logger.warning("RQ worker: could not deregister, Redis failed (%s)", error)
            self.unsubscribe()

    def subscribe(self):
        # RQ's own, with the thread waking every PUBSUB_WAKE seconds instead of 60.
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=PUBSUB_WAKE, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    def unsubscribe(self):
        # RQ's, without its race: the thread closes the pubsub itself once its loop ends, and
        # RQ closes it too after a join of 1 s. With a thread that ends within about a second,
        # both closes met ('NoneType' object has no attribute 'deregister_connect_callback').
        # The pubsub is closed here only once the thread has ended (one after the other is safe).
        thread = self.pubsub_thread
        if not thread:
            return
        self.pubsub.unsubscribe()
        thread.stop()  # redis-py 8.2 waits for the thread here; 8.1 does not
        thread.join(timeout=PUBSUB_WAKE * 5)
        if not thread.is_alive():
            self.pubsub.close()

    def _shutdown(self):
        # An idle RQ worker stops by raising StopRequested from its signal handler. Should the
        # signal land where exceptions are swallowed (a __del__, an import's module-lock
        # callback), the flag still ends the loop at its next turn.
        self._stop_requested = True
        super()._shutdown()

    @staticmethod
    def _refusal(job):
        """Why `job` must not run (RefusedJob, MalformedMessage), or None. Imports nothing."""
        try:
            if job.unreadable:
                return MalformedMessage(job.unreadable)
            if reason := jobs.refusal(job):
                return RefusedJob(reason)
            backend = job_backend(job)
            jobs.check_job(job, backend.max_attempts)
            backend.load_task(job.args[0])
        except (RefusedJob, MalformedMessage) as refused:
            return refused
        except Exception as error:  # undecodable data, a pickle: refused too
            return MalformedMessage(f"job data cannot be read as JSON ({type(error).__name__})")
        return None

    def _start_scheduler(
        self, burst=False, logging_level="INFO", date_format=None, log_format=None
    ):
        """RQ's, with a scheduler that reads scheduled jobs with our job class."""
        formats = {"date_format": date_format, "log_format": log_format}
        self.scheduler = TaskScheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            serializer=self.serializer,
            **{name: value for name, value in formats.items() if value is not None},
        )
        self.scheduler.acquire_locks()
        if self.scheduler.acquired_locks:
            if burst:
                try:
                    self.scheduler.register_birth()
                    self.scheduler.enqueue_scheduled_jobs()
                finally:
                    self.scheduler.release_locks()
                    self.scheduler.register_death()
            else:
                start_scheduler(self.scheduler)


def take_scheduler_locks(scheduler):
    """The locks of `scheduler`'s queues that are its own: still held in its name (its dead
    process's, not lapsed yet), or free and taken now (acquire_locks).

    rq 2.x's acquire_locks adds what it takes to every lock the scheduler ever had: after its
    process died and its lock lapsed (during a long job, when no heartbeat looks) and another
    worker's scheduler took it, a scheduler was started here beside that one (each due job
    enqueued twice, run twice), and released the other's lock when it stopped. rq 3 keeps only
    the locks it holds, as this does."""
    queues = sorted(scheduler._queue_names)
    holders = scheduler.connection.mget([scheduler.get_locking_key(name) for name in queues])
    own = scheduler.name.encode()
    scheduler._acquired_locks = {
        name
        for name, holder in zip(queues, holders, strict=True)
        if holder in (own, scheduler.name)
    }
    scheduler.acquire_locks()


def start_scheduler(scheduler):
    """Fork the scheduler's process. It starts with this one's stop handlers (the worker's),
    until it installs its own: a SIGTERM the worker forwards in between (a stop right after
    start-up) only set the copied worker's flag, the scheduler never stopped, and the worker
    waited for it for ever. Held back until then (TaskScheduler.work unblocks them)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        scheduler.start()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


class TaskScheduler(RQScheduler):
    """RQ's scheduler, reading due jobs with BoundedJob: RQ's Job would fail on a planted job's
    bad field, and the scheduler with it; the worker then refuses that job.

    It also outlives the server's outages: RQ's scheduler process ends at the first error Redis
    gives it, and the worker starts another only at its next maintenance (every 10 minutes), so
    after a blip of a second every delayed task (the impressions' flush) waited up to 10 minutes.
    """

    def start(self):
        self.worker_pid = os.getpid()  # for work(), in the forked process
        return super().start()

    def work(self):
        # RQ's loop (register, heartbeat with the locks, enqueue what is due, sleep), each turn
        # tried again after a Redis error: a heartbeat re-takes a lock that expired meanwhile.
        self._install_signal_handlers()
        # Killed outright (SIGKILL, the OOM killer), the worker left this process behind,
        # scheduling on: it stops as on a SIGTERM once its worker is gone, as --concurrency's
        # worker processes do.
        stop_with_parent(self.worker_pid)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked at the fork
        registered, failing = False, None
        while not self._stop_requested:
            try:
                if not registered or failing is not None:
                    self.register_birth()
                    registered = True
                if self.should_reacquire_locks:
                    self.acquire_locks()
                self.heartbeat()
                self.enqueue_scheduled_jobs()
            except redis.RedisError as error:
                redis_failed(error, self.connection)  # a demoted primary's connections dropped
                if failing is None:
                    logger.warning(
                        "RQ scheduler: Redis failed (%s: %s); trying again every %s s",
                        type(error).__name__,
                        error,
                        self.interval,
                    )
                failing = error
            else:
                if failing is not None:
                    logger.warning("RQ scheduler: Redis answers again; scheduling goes on")
                failing = None
            time.sleep(self.interval)
        with contextlib.suppress(redis.RedisError):  # else its locks and key expire on their own
            self.stop()

    def enqueue_scheduled_jobs(self):
        self._status = self.Status.WORKING
        if not self._scheduled_job_registries and self._acquired_locks:
            self.prepare_registries()
        for registry in self._scheduled_job_registries:
            # Due by the server's clock (jobs.server_now), as they were scheduled.
            job_ids = registry.get_jobs_to_schedule(
                int(jobs.server_now(self.connection).timestamp())
            )
            if not job_ids:
                continue
            queue = Queue(registry.name, connection=self.connection, serializer=self.serializer)
            with self.connection.pipeline() as pipeline:
                found = jobs.BoundedJob.fetch_many(
                    job_ids, connection=self.connection, serializer=self.serializer
                )
                for job in found:
                    if job is not None:
                        queue._enqueue_job(
                            job, pipeline=pipeline, at_front=job.should_enqueue_at_front()
                        )
                for job_id in job_ids:
                    registry.remove(job_id, pipeline=pipeline)
                pipeline.execute()
        self._status = self.Status.STARTED


class RQWorker:
    """Checks the Redis is standalone, then runs an RQ worker over the backend's queues."""

    # The server is down, misaddressed or refuses the client: reported without a traceback.
    unreachable_errors = (redis.ConnectionError, redis.TimeoutError, NoPermissionError)

    @staticmethod
    def remedy(error):
        """What to do about one of unreachable_errors at start-up, or ""."""
        remedy = refusal_remedy(error, "the backend's RQ_QUEUES entry") or ""
        return remedy[:1].lower() + remedy[1:].rstrip(".")  # runworker's sentence goes on

    def __init__(self, backend, *, queues=None, burst=False, max_jobs=None):
        self.backend = backend
        unknown = sorted(set(queues or ()) - set(backend.queues))
        if unknown:
            # A worker on a queue nothing sends to would wait there for ever, quietly.
            raise QueueConfigurationError(
                f"TASKS[{backend.alias!r}] has no queue {', '.join(map(repr, unknown))}: its"
                f" QUEUES are {', '.join(sorted(backend.queues))}."
            )
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
        # RQ logs what ended its loop and returns: exit 1 then, not 0 (a restart policy such as
        # on-failure would take 0 for a clean stop). An unreachable Redis is reported as at start.
        if isinstance(worker.loop_error, self.unreachable_errors):
            raise worker.loop_error
        return 1 if worker.loop_error is not None or worker.forced_stop else 0
