"""The SQS poller: long-polls, runs each task with a visibility heartbeat, deletes on success.

A failed task is re-sent for its next attempt (DelaySeconds: the backend's retry delay); after the
last attempt, and at once for a message that can never run, the worker moves it to the queue's
dead-letter queue itself (found from the queue's RedrivePolicy, read at start).
"""

import logging
import os
import signal
import socket
import threading
import time

from botocore.exceptions import BotoCoreError, ClientError
from django.utils import timezone

from redis_endpoints import redacting_logger

from .. import liveness
from ..exceptions import ForcedStop, MalformedMessage, QueueConfigurationError, RefusedJob
from ..execution import (
    TaskTimeout,
    TaskTimer,
    between_jobs,
    discard_connections,
    execute,
    interrupt,
    new_result,
    report_refusal,
)
from ..signals import sqs_receive_failed
from ..times import aware
from .backend import error_code
from .deadletter import dead_letter
from .heartbeat import VisibilityHeartbeat
from .messages import decode_message, delay_seconds, held_whole, next_attempt_body

logger = redacting_logger("queues.worker")

# botocore's errors for a failed call (network, throttling, a queue gone for a while).
TRANSIENT_ERRORS = (BotoCoreError, ClientError)
# Refusals no wait cures: before its first receive the worker reports them and exits (runworker
# names the remedy) rather than retry them for ever; later, they are ridden out like the rest.
MISCONFIGURED_CODES = {
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "AccessDenied",
    "AccessDeniedException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidSecurity",
}
MISCONFIGURED_NAMES = {"NoRegionError", "NoCredentialsError", "PartialCredentialsError"}
# SQS's refusals on behalf of the KMS key of a queue encrypted with one (SSE-KMS): the caller may
# not use it, or it is disabled, deleted or pending deletion. KMS.ThrottlingException passes.
KMS_REFUSALS = {
    "KMS.AccessDeniedException",
    "KMS.DisabledException",
    "KMS.InvalidKeyUsageException",
    "KMS.InvalidStateException",
    "KMS.NotFoundException",
    "KMS.OptInRequired",
}
# Seconds between two looks at the stop flag while a long poll is waited for.
STOP_CHECK = 0.1


class Poll(threading.Thread):
    """One ReceiveMessage call, made in a thread of its own so that the worker need not wait it
    out to stop: `done` is set once it answered (`messages`) or failed (`error`)."""

    def __init__(self, receive):
        super().__init__(name="sqs-receive", daemon=True)  # daemon: an abandoned one ends with us
        self.receive = receive
        self.messages, self.error = [], None
        self.done = threading.Event()

    def run(self):
        try:
            self.messages = self.receive()
        except BaseException as error:  # handed to the worker's thread, which raises it
            self.error = error
        finally:
            self.done.set()


class SQSWorker:
    """Runs the tasks of one SQS backend until stopped (or, with burst, until nothing is due)."""

    # The server is down or misaddressed: reported without a traceback.
    unreachable_errors = TRANSIENT_ERRORS

    @staticmethod
    def remedy(error):
        """What to do about one of unreachable_errors at start-up, or ""."""
        name = type(error).__name__
        code = error_code(error)
        if name == "NoRegionError":
            return (
                "set AWS_DEFAULT_REGION in the worker's environment (or region in its AWS profile)"
            )
        if name in ("NoCredentialsError", "PartialCredentialsError"):
            return (
                "give the worker AWS credentials: a task or instance role, AWS_PROFILE, or"
                " AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        if "NonExistentQueue" in code or code == "QueueDoesNotExist":
            return "create the queue and its dead-letter queue with `manage.py sqs_setup`"
        if code in ("AccessDenied", "AccessDeniedException"):
            return "give the worker's role the worker's IAM policy (docs/operations/aws.md)"
        if code in KMS_REFUSALS:
            return (
                "the queues are encrypted with a KMS key (SSE-KMS): give the worker's role"
                " kms:Decrypt and kms:GenerateDataKey on it, and check that the key is enabled"
                " (docs/operations/aws.md)"
            )
        if code in ("InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch"):
            return "check the worker's AWS credentials: these keys are not valid"
        if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"):
            return "check the network path to SQS, or AWS_ENDPOINT_URL_SQS if one is set"
        return ""

    @staticmethod
    def misconfigured(error):
        """Whether `error` is a refusal that waiting will not cure (see MISCONFIGURED_CODES)."""
        code = error_code(error)
        return (
            code in MISCONFIGURED_CODES
            or code in KMS_REFUSALS
            or type(error).__name__ in MISCONFIGURED_NAMES
        )

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
        # Read from the queue before the first receive (prepare()).
        self.visibility_timeout = None
        self.dead_letters = None
        self.prepared = False
        self.receive_sent = None  # when the last ReceiveMessage was sent (monotonic)

    def request_stop(self, signum, frame):
        if self.stop_requested:
            # As RQ does: a second signal within a second is the same stop arriving twice (the
            # process group's and the --concurrency parent's forward, or a terminal's Ctrl-C).
            if time.monotonic() - self.stop_requested_at < 1:
                return
            logger.warning("Second stop signal: exiting without finishing the running task")
            interrupt(ForcedStop(1))  # raised here, or in an async task's coroutine
            return
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
        tasks = self.backend.task_registry()  # imports the tasks modules once, before any message
        logger.info("%d task(s) registered", len(tasks))
        failures = 0
        received = False  # a receive has succeeded: the queue is there and ours to read
        while not self.stop_requested and not self.reached_max_jobs():
            try:
                if not self.prepared:
                    self.prepare()
                messages = self.receive()
            except TRANSIENT_ERRORS as error:
                if self.burst:
                    raise  # a one-off run reports the outage instead of waiting it out
                if not received and self.misconfigured(error):
                    raise  # no queue, no permission, no credentials: said at start, not retried
                sqs_receive_failed.send(type(self), error=error)
                failures += 1
                pause = min(30, 2**failures)
                logger.warning("Receiving from SQS failed (%s); retrying in %d s", error, pause)
                self.stopping.wait(pause)
                continue
            if failures:
                logger.warning(
                    "Receiving from SQS works again after %d failed attempt(s)", failures
                )
            failures, received = 0, True
            if not messages and self.burst and not self.deferred_task_due():
                break
            if messages:
                with self.hold(messages) as heartbeat:
                    self.handle_batch(messages, heartbeat)
        logger.info("SQS worker %s stopped after %d message(s)", self.worker_id, self.handled)
        return 0

    def prepare(self):
        """Read the queue's VisibilityTimeout (unless OPTIONS set one) and its dead-letter queue."""
        attributes = self.backend.queue_attributes(["VisibilityTimeout", "RedrivePolicy"])
        configured = self.options["VISIBILITY_TIMEOUT"]
        # A queue may say 0; held messages must stay hidden for at least a moment to be held.
        self.visibility_timeout = configured or max(1, int(attributes["VisibilityTimeout"]))
        self.dead_letters = self.backend.dead_letter_queue(attributes)
        self.prepared = True
        source = "VISIBILITY_TIMEOUT" if configured else "the queue's VisibilityTimeout"
        if self.dead_letters is None:
            logger.error(
                "The SQS queue %s has no redrive policy: messages that can never run, and tasks"
                " that failed MAX_ATTEMPTS times, stay in the queue (run manage.py sqs_setup)",
                self.backend.queue_name,
            )
        logger.info(
            "Visibility timeout %d s (%s); dead-letter queue: %s",
            self.visibility_timeout,
            source,
            self.dead_letters.name if self.dead_letters else "none",
        )

    def hold(self, messages):
        return VisibilityHeartbeat(
            self.backend,
            messages,
            self.visibility_timeout,
            limit=liveness.stall_limit(self.options["JOB_TIMEOUT"]),
            received=self.receive_sent,
        )

    def handle_batch(self, messages, heartbeat):
        for position, message in enumerate(messages):
            if self.stop_requested or self.reached_max_jobs():
                heartbeat.release(messages[position:])
                break
            if not heartbeat.holds(message):
                continue  # handed to other workers while an earlier task ran long
            if not heartbeat.can_finish():
                # Its 12 h of SQS hiding are nearly used up waiting: started, it would be received
                # again mid-task. Sent again instead, with 12 h of its own.
                logger.info(
                    "Message %s waited too long to start: handed back", message["MessageId"]
                )
                heartbeat.release([message])
                continue
            try:
                outcome = self.handle(message, heartbeat)
            except TRANSIENT_ERRORS:
                # Not deleted: the message comes back after its visibility timeout.
                logger.warning("SQS failed while handling %s", message["MessageId"], exc_info=True)
                outcome = "error"
            except Exception:
                # Whatever one message makes go wrong stays with that message: it comes back
                # after its visibility timeout, and the queue's RedrivePolicy moves it to the DLQ
                # after maxReceiveCount receives. Not BaseException: a stop must still stop.
                logger.exception("Handling message %s failed", message["MessageId"])
                outcome = "error"
            # Not on a forced stop or a crash: the heartbeat then releases this message too.
            heartbeat.let_go(message)
            if outcome != "deferred":
                self.handled += 1
            between_jobs()

    def receive(self):
        """The messages of one long poll (WAIT_TIME_SECONDS), or none once a stop is requested.

        An idle worker spends its time here, and a deploy should not wait up to 20 s for it. The
        poll runs in a thread while this one watches the stop flag; on a stop the poll is
        abandoned, never interrupted: raising into botocore from the signal handler could land
        anywhere in it (a lock held, a `finally` skipped, or an `except` that swallows the stop),
        and polling with a short wait would multiply the requests an idle worker makes. Should SQS
        answer the abandoned poll with messages (as the process exits), nobody holds them: they stay
        hidden until the queue's visibility timeout, then are received again, as after a crash.
        At-least-once either way, as always with SQS: a task may run twice (the impressions
        flush's ledger applies a flush once).
        """
        poll = Poll(self.receive_now)
        self.receive_sent = time.monotonic()
        poll.start()
        while not poll.done.wait(STOP_CHECK):
            # Answered since the look (is_set): its messages are ours to hand back at once.
            if self.stop_requested and not poll.done.is_set():
                logger.info("Stopping without waiting for the long poll's answer")
                return []
        if poll.error is not None:
            raise poll.error
        return poll.messages

    def receive_now(self):
        """ReceiveMessage, waiting up to WAIT_TIME_SECONDS for a message."""
        wanted = self.options["MAX_MESSAGES"]
        if self.max_jobs is not None:
            wanted = min(wanted, self.max_jobs - self.handled)
        answer = self.backend.poll_client.receive_message(
            QueueUrl=self.backend.queue_url,
            MaxNumberOfMessages=wanted,
            WaitTimeSeconds=self.options["WAIT_TIME_SECONDS"],
            # Hidden for the worker's timeout from the start, not the queue's until the first
            # renewal: a worker killed in between leaves them hidden that long only.
            VisibilityTimeout=self.visibility_timeout,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return answer.get("Messages", [])

    def reached_max_jobs(self):
        return self.max_jobs is not None and self.handled >= self.max_jobs

    def deferred_task_due(self):
        now = aware(timezone.now())  # naive times in a repeated hour compare by their fold
        return any(aware(run_after) <= now for run_after in self.deferred.values())

    def handle(self, message, heartbeat):
        """Run, defer or set aside one message; returns the outcome logged."""
        timer = TaskTimer("-", message["MessageId"])
        try:
            envelope = decode_message(message["Body"], self.backend.max_attempts)
            timer.task_path, timer.job_id = envelope["task"], envelope["id"]  # bounded, printable
            task = self.backend.load_task(envelope["task"])
        except (MalformedMessage, RefusedJob) as error:
            return self.set_aside(message, timer, error)
        except Exception as error:  # MemoryError, RecursionError, a bug: this message only
            logger.exception("Reading message %s failed", message["MessageId"])
            unreadable = MalformedMessage(f"the message cannot be read ({type(error).__name__})")
            return self.set_aside(message, timer, unreadable)
        self.deferred.pop(envelope["id"], None)
        run_after = envelope["run_after"]
        # Due by SQS's delay when it held the whole of it, else by this host's clock.
        if not held_whole(run_after, envelope["enqueued_at"]) and aware(run_after) > aware(
            timezone.now()
        ):
            self.defer(message, envelope["id"], run_after)
            timer.log("deferred", run_after=run_after.isoformat())
            return "deferred"
        result = new_result(
            self.backend.task_as_enqueued(task, envelope.get("queue_name")),
            envelope["id"],
            envelope["args"],
            envelope["kwargs"],
            envelope.get("backend") or self.backend.alias,
            enqueued_at=envelope["enqueued_at"],
            worker_ids=envelope["worker_ids"],
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
            # Where the task was when it was stopped (printed once: see execute()).
            logger.exception("Task %s (%s) timed out", envelope["task"], envelope["id"])
            discard_connections()
            # A failed attempt like any other.
            return self.after_failure(message, envelope, timer, "timed-out", reason=error)
        except Exception:
            logger.exception("Task %s (%s) failed", envelope["task"], envelope["id"])
            return self.after_failure(message, envelope, timer, "failed")
        self.delete(message)
        timer.log("succeeded")
        return "succeeded"

    def set_aside(self, message, timer, error):
        """A message that can never run: to the dead-letter queue now, logged once."""
        reason = report_refusal(type(self.backend), self.backend.alias, error)
        if self.dead_letters is None:
            # It comes back after the visibility timeout, and is refused again.
            timer.log("set-aside", logging.WARNING, reason=error, next="left-in-queue")
            return "set-aside"
        self.dead_letter(message, f"{reason}: {error}")
        timer.log("set-aside", logging.WARNING, reason=error, next=f"dlq:{self.dead_letters.name}")
        return "set-aside"

    def after_failure(self, message, envelope, timer, outcome, **details):
        """A failed attempt: re-send the next one after the retry delay, or after the last one
        move the message to the dead-letter queue (as its next attempt, for sqs_redrive)."""
        attempt, limit = envelope["attempt"], self.backend.max_attempts
        following = next_attempt_body(message["Body"], envelope, self.worker_id)
        details["attempt"] = f"{attempt}/{max(attempt, limit)}"
        if attempt < limit:
            delay = self.backend.retry_delay(attempt)
            # Sent before the delete: interrupted between the two, both attempts run.
            self.backend.send(following, delay)
            self.delete(message)
            timer.log(outcome, logging.ERROR, **details, next_attempt_in=f"{delay}s")
        elif self.dead_letters is not None:
            self.dead_letter(message, f"{outcome} on attempt {attempt} of {limit}", following)
            timer.log(outcome, logging.ERROR, **details, next=f"dlq:{self.dead_letters.name}")
        else:
            # No DLQ to go to: received again after the visibility timeout, and run again.
            timer.log(outcome, logging.ERROR, **details, next="left-in-queue")
        return outcome

    def dead_letter(self, message, reason, body=None):
        dead_letter(
            self.backend.client, self.backend.queue_url, self.dead_letters, message, reason, body
        )

    def defer(self, message, result_id, run_after):
        """Re-send a message due later than SQS can delay it, then drop the received copy."""
        self.backend.send(message["Body"], delay_seconds(run_after))
        self.delete(message)
        if self.burst:  # only burst waits for them: a long-running worker keeps no list
            self.deferred[result_id] = run_after

    def delete(self, message):
        try:
            self.backend.client.delete_message(
                QueueUrl=self.backend.queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        except TRANSIENT_ERRORS:
            # At-least-once: the message comes back after its visibility timeout and runs again.
            logger.warning("Could not delete message %s", message["MessageId"], exc_info=True)
