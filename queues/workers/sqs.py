"""The SQS poller: long-polls, runs each task with a visibility heartbeat, deletes on success."""

import logging
import os
import signal
import socket
import threading
import time

from django.utils import timezone

from .. import liveness
from ..backends import sqs as sqs_backend
from ..exceptions import MalformedMessage, RefusedJob
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

logger = logging.getLogger("queues.worker")


class VisibilityHeartbeat:
    """Keeps the messages of one receive hidden while this worker holds them.

    All of them, from the receive on: the ones waiting behind a running task must not reappear for
    another worker meanwhile (which would run them twice). Two limits keep one slow task from
    holding the rest:
    - once the running task has taken longer than `visibility_timeout`, the messages still waiting
      are released (visible at once) for other workers, and this worker skips them;
    - a running task's own message is renewed for `limit` seconds from its start at most
      (liveness.stall_limit: JOB_TIMEOUT + STALL_GRACE): a wedged task lets its message go back to the queue, to
      another worker and in the end to the DLQ.
    """

    BATCH = 10  # Change…VisibilityBatch takes 10 entries at most

    def __init__(self, client, queue_url, messages, visibility_timeout, limit):
        self.client, self.queue_url = client, queue_url
        self.visibility_timeout, self.limit = visibility_timeout, limit
        # receipt handle -> [message id, when its task started or None while it waits]
        self.held = {m["ReceiptHandle"]: [m["MessageId"], None] for m in messages}
        self.state_lock = threading.Lock()  # guards `held`
        # Serialises the SQS calls: a release must not be overtaken by a renewal already in flight
        # (which would hide the released message again).
        self.call_lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.beat, name="sqs-visibility", daemon=True)

    def holds(self, message):
        with self.state_lock:
            return message["ReceiptHandle"] in self.held

    def started(self, message):
        """The task of `message` starts now (its renewal limit counts from now)."""
        with self.state_lock:
            if message["ReceiptHandle"] in self.held:
                self.held[message["ReceiptHandle"]][1] = time.monotonic()

    def let_go(self, message):
        """Handled (deleted, failed or set aside): no more renewals."""
        with self.state_lock:
            self.held.pop(message["ReceiptHandle"], None)

    def release(self, messages=None):
        """Stop holding `messages` (default: all still held) and make them visible at once, for
        other workers; returns how many were released."""
        with self.call_lock:
            with self.state_lock:
                wanted = self.held if messages is None else (m["ReceiptHandle"] for m in messages)
                receipts = [receipt for receipt in wanted if receipt in self.held]
                for receipt in receipts:
                    self.held.pop(receipt)
            self.change_visibility(receipts, 0)
        return len(receipts)

    def extend(self):
        with self.call_lock:
            self._let_slow_tasks_go()
            with self.state_lock:
                receipts = list(self.held)
            self.change_visibility(receipts, self.visibility_timeout)

    def _let_slow_tasks_go(self):
        now = time.monotonic()
        with self.state_lock:
            running = {r: entry for r, entry in self.held.items() if entry[1] is not None}
            overdue = [r for r, (_, start) in running.items() if now - start > self.limit]
            slow = any(now - start > self.visibility_timeout for _, start in running.values())
            waiting = [r for r, (_, start) in self.held.items() if start is None] if slow else []
            for receipt in overdue:
                logger.error(
                    "The task of message %s has run %d s, past JOB_TIMEOUT and a grace: no longer"
                    " keeping it hidden (it will be received again; the worker's /healthz says"
                    " stalled)",
                    self.held.pop(receipt)[0],
                    now - running[receipt][1],
                )
            for receipt in waiting:
                self.held.pop(receipt)
        if waiting:
            logger.info(
                "A task has run longer than the visibility timeout: releasing %d waiting"
                " message(s) to other workers",
                len(waiting),
            )
            self.change_visibility(waiting, 0)

    def change_visibility(self, receipts, seconds):
        for first in range(0, len(receipts), self.BATCH):
            chunk = receipts[first : first + self.BATCH]
            entries = [
                {"Id": str(n), "ReceiptHandle": receipt, "VisibilityTimeout": seconds}
                for n, receipt in enumerate(chunk)
            ]
            try:
                answer = self.client.change_message_visibility_batch(
                    QueueUrl=self.queue_url, Entries=entries
                )
            except Exception:
                logger.warning("Could not change the visibility of held messages", exc_info=True)
                continue
            for failure in answer.get("Failed", []):
                receipt = chunk[int(failure["Id"])]
                with self.state_lock:
                    still_held = receipt in self.held
                if still_held or seconds == 0:  # else it was deleted meanwhile: nothing to say
                    logger.warning("Could not change the visibility of a message: %s", failure)

    def beat(self):
        interval = max(0.5, self.visibility_timeout / 3)
        while not self.stopped.wait(interval):
            self.extend()

    def __enter__(self):
        self.extend()  # at once: the queue's own timeout may be shorter than our interval
        self.thread.start()
        return self

    def __exit__(self, exc_type, exc, traceback):
        self.stopped.set()
        self.thread.join()
        # Leaving mid-batch (a second stop signal, a crash): what it still holds, the interrupted
        # task's message included, goes back to the queue now, not after the visibility timeout.
        if exc_type is not None and (released := self.release()):
            logger.warning("Left mid-batch: released %d held message(s)", released)


class SQSWorker:
    """Runs the tasks of one SQS backend until stopped (or, with burst, until nothing is due)."""

    def __init__(self, backend, *, burst=False, max_jobs=None):
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
            except transient_errors() as error:
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
            except transient_errors():
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
            envelope = sqs_backend.decode_message(message["Body"])
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
        self.backend.send(message["Body"], sqs_backend.delay_seconds(run_after))
        self.delete(message)
        self.deferred[sqs_backend.decode_message(message["Body"])["id"]] = run_after

    def delete(self, message):
        try:
            self.backend.client.delete_message(
                QueueUrl=self.backend.queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        except transient_errors():
            # At-least-once: the message comes back after its visibility timeout and runs again.
            logger.warning("Could not delete message %s", message["MessageId"], exc_info=True)


def transient_errors():
    """botocore's errors for a failed call (network, throttling, a queue gone for a while)."""
    from botocore import exceptions

    return (exceptions.BotoCoreError, exceptions.ClientError)
