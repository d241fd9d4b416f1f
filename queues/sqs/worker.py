"""The SQS poller: long-polls, runs each task with a visibility heartbeat, deletes on success."""

import logging
import os
import signal
import socket
import threading
import time

from botocore.exceptions import BotoCoreError, ClientError
from django.utils import timezone

from .. import liveness
from ..exceptions import MalformedMessage, QueueConfigurationError, RefusedJob
from ..execution import (
    TaskTimeout,
    TaskTimer,
    between_jobs,
    discard_connections,
    execute,
    load_task,
    new_result,
)
from ..signals import sqs_receive_failed
from .heartbeat import VisibilityHeartbeat
from .messages import decode_message, delay_seconds

logger = logging.getLogger("queues.worker")

# botocore's errors for a failed call (network, throttling, a queue gone for a while).
TRANSIENT_ERRORS = (BotoCoreError, ClientError)


class SQSWorker:
    """Runs the tasks of one SQS backend until stopped (or, with burst, until nothing is due)."""

    # The server is down or misaddressed: reported without a traceback.
    unreachable_errors = TRANSIENT_ERRORS

    def __init__(self, backend, *, queues=None, burst=False, max_jobs=None):
        if queues:
            # Every Django queue name of this backend shares one SQS queue: no way to pick some.
            raise QueueConfigurationError(
                f"TASKS[{backend.alias!r}]: --queue applies to RQ only; configure another TASKS"
                " alias for another SQS queue."
            )
        self.backend, self.burst, self.max_jobs = backend, burst, max_jobs
        self.options = backend.options
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:sqs"
        self.stop_requested = False
        self.stop_requested_at = None
        self.stopping = threading.Event()  # wakes the back-off sleep on a stop request
        self.handled = 0
        # Deferred tasks this worker re-sent, by id: burst waits for those already due.
        self.deferred = {}

    def request_stop(self, signum, frame):
        if self.stop_requested:
            # As RQ does: a second signal within a second is the same stop arriving twice (the
            # process group's and the --concurrency parent's forward, or a terminal's Ctrl-C).
            if time.monotonic() - self.stop_requested_at < 1:
                return
            logger.warning("Second stop signal: exiting without finishing the running task")
            raise SystemExit(1)
        logger.info("Stop requested: finishing the running task, receiving nothing new")
        self.stop()

    def stop(self):
        """Finish the running task, receive nothing new (also callable from another thread)."""
        if not self.stop_requested:
            self.stop_requested_at = time.monotonic()
        self.stop_requested = True
        self.stopping.set()

    def install_signal_handlers(self):
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)

    def run(self):
        """The loop; returns the exit code (0 on a clean stop)."""
        self.install_signal_handlers()
        queue_url = self.backend.queue_url
        logger.info("SQS worker %s polling %s", self.worker_id, queue_url)
        failures = 0
        while not self.stop_requested and not self.reached_max_jobs():
            try:
                messages = self.receive()
            except TRANSIENT_ERRORS as error:
                if self.burst:
                    raise  # a one-off run reports the outage instead of waiting it out
                sqs_receive_failed.send(type(self), error=error)
                failures += 1
                pause = min(30, 2**failures)
                logger.warning("Receiving from SQS failed (%s); retrying in %d s", error, pause)
                self.stopping.wait(pause)
                continue
            failures = 0
            if not messages and self.burst and not self.deferred_task_due():
                break
            if messages:
                with self.hold(messages) as heartbeat:
                    self.handle_batch(messages, heartbeat)
        logger.info("SQS worker %s stopped after %d message(s)", self.worker_id, self.handled)
        return 0

    def hold(self, messages):
        return VisibilityHeartbeat(
            self.backend.client,
            self.backend.queue_url,
            messages,
            self.options["VISIBILITY_TIMEOUT"],
            limit=liveness.stall_limit(self.options["JOB_TIMEOUT"]),
        )

    def handle_batch(self, messages, heartbeat):
        for position, message in enumerate(messages):
            if self.stop_requested or self.reached_max_jobs():
                heartbeat.release(messages[position:])
                break
            if not heartbeat.holds(message):
                continue  # released to other workers while an earlier task ran long
            try:
                outcome = self.handle(message, heartbeat)
            except TRANSIENT_ERRORS:
                # Not deleted: the message comes back after its visibility timeout.
                logger.warning("SQS failed while handling %s", message["MessageId"], exc_info=True)
                outcome = "error"
            # Not on a forced stop or a crash: the heartbeat then releases this message too.
            heartbeat.let_go(message)
            if outcome != "deferred":
                self.handled += 1
            between_jobs()

    def receive(self):
        wanted = self.options["MAX_MESSAGES"]
        if self.max_jobs is not None:
            wanted = min(wanted, self.max_jobs - self.handled)
        answer = self.backend.poll_client.receive_message(
            QueueUrl=self.backend.queue_url,
            MaxNumberOfMessages=wanted,
            WaitTimeSeconds=self.options["WAIT_TIME_SECONDS"],
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return answer.get("Messages", [])

    def reached_max_jobs(self):
        return self.max_jobs is not None and self.handled >= self.max_jobs

    def deferred_task_due(self):
        now = timezone.now()
        return any(run_after <= now for run_after in self.deferred.values())

    def handle(self, message, heartbeat):
        """Run, defer or set aside one message; returns the outcome logged."""
        timer = TaskTimer("-", message["MessageId"])
        receives = message.get("Attributes", {}).get("ApproximateReceiveCount", "?")
        try:
            envelope = decode_message(message["Body"])
            timer.task_path, timer.job_id = envelope["task"], envelope["id"]
            task = load_task(envelope["task"])
        except (MalformedMessage, RefusedJob) as error:
            # Not deleted: it reappears after the visibility timeout, and the queue's redrive
            # policy moves it to the dead-letter queue after maxReceiveCount receives.
            timer.log("set-aside", logging.WARNING, f"receives={receives} reason={error}")
            return "set-aside"
        self.deferred.pop(envelope["id"], None)
        run_after = envelope["run_after"]
        if run_after is not None and run_after > timezone.now():
            self.defer(message, run_after)
            timer.log("deferred", detail=f"run_after={run_after.isoformat()}")
            return "deferred"
        result = new_result(
            task,
            envelope["id"],
            envelope["args"],
            envelope["kwargs"],
            envelope.get("backend") or self.backend.alias,
            enqueued_at=envelope["enqueued_at"],
        )
        heartbeat.started(message)
        try:
            with liveness.CLOCK.running():
                execute(
                    result,
                    self.worker_id,
                    sender=type(self.backend),
                    timeout=self.options["JOB_TIMEOUT"],
                )
        except TaskTimeout as error:
            discard_connections()
            # Like a failure: left for redelivery, and for the DLQ after maxReceiveCount.
            timer.log("timed-out", logging.ERROR, f"receives={receives} reason={error}")
            return "timed-out"
        except Exception:
            # Left in the queue: SQS redelivers it, and the DLQ takes it after maxReceiveCount.
            logger.exception("Task %s (%s) failed", envelope["task"], envelope["id"])
            timer.log("failed", logging.ERROR, f"receives={receives}")
            return "failed"
        self.delete(message)
        timer.log("succeeded")
        return "succeeded"

    def defer(self, message, run_after):
        """Re-send a message due later than SQS can delay it, then drop the received copy."""
        self.backend.send(message["Body"], delay_seconds(run_after))
        self.delete(message)
        self.deferred[decode_message(message["Body"])["id"]] = run_after

    def delete(self, message):
        try:
            self.backend.client.delete_message(
                QueueUrl=self.backend.queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        except TRANSIENT_ERRORS:
            # At-least-once: the message comes back after its visibility timeout and runs again.
            logger.warning("Could not delete message %s", message["MessageId"], exc_info=True)
