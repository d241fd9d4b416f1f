"""Keeps the SQS messages a worker holds hidden from other workers while it runs their tasks."""

import threading
import time

from redis_endpoints import redacting_logger

from .backend import MAX_HIDDEN
from .messages import remaining_delay

logger = redacting_logger("queues.worker")
# Seconds kept clear of SQS's 12 h cap: for the time a renewal takes to reach SQS (the clock
# itself starts when the receive was sent, never after SQS's).
CAP_MARGIN = 5


class VisibilityHeartbeat:
    """Keeps the messages of one receive hidden while this worker holds them.

    All of them, from the receive on: the ones waiting behind a running task must not reappear for
    another worker meanwhile (which would run them twice). Two limits keep one slow task from
    holding the rest:
    - once the running task has taken longer than `visibility_timeout`, the messages still waiting
      are handed back (hand_back: re-sent) for other workers, and this worker skips them;
    - a running task's own message is renewed for `limit` seconds from its start at most
      (liveness.stall_limit: JOB_TIMEOUT + STALL_GRACE): a wedged task lets its message go back to the queue, to
      another worker and in the end to the DLQ.
    SQS keeps a message hidden 12 h at most from its receive (MAX_HIDDEN), and refuses a renewal
    past that: the last renewal asks for what is left, and a message whose task could no longer
    run to its limit within it is handed back rather than started (can_finish), as a fresh
    message with 12 h of its own.
    """

    BATCH = 10  # the …Batch calls take 10 entries at most

    def __init__(self, backend, messages, visibility_timeout, limit, received=None):
        self.backend = backend
        self.client, self.queue_url = backend.client, backend.queue_url
        self.visibility_timeout, self.limit = visibility_timeout, limit
        # When the ReceiveMessage call was sent (monotonic): SQS's 12 h start at some moment of
        # its long poll, never before; counted from its start, the cap is never overshot.
        self.received = time.monotonic() if received is None else received
        # receipt handle -> [message, when its task started or None while it waits]
        self.held = {m["ReceiptHandle"]: [m, None] for m in messages}
        self.state_lock = threading.Lock()  # guards `held`
        # Serialises the SQS calls: a release must not be overtaken by a renewal already in flight
        # (which would hide the released message again).
        self.call_lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.beat, name="sqs-visibility", daemon=True)

    def left(self, now=None):
        """Seconds SQS may still keep these messages hidden (12 h from their receive)."""
        now = time.monotonic() if now is None else now
        return MAX_HIDDEN - CAP_MARGIN - (now - self.received)

    def can_finish(self, now=None):
        """Whether a task starting now could run to its limit with its message kept hidden."""
        return self.limit is None or self.limit <= self.left(now)

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
        """Stop holding `messages` (default: all still held) and give them back to the queue at
        once, for other workers: visible again if their task started, else hand_back; returns
        how many."""
        with self.call_lock:
            with self.state_lock:
                wanted = (
                    list(self.held) if messages is None else [m["ReceiptHandle"] for m in messages]
                )
                entries = [self.held.pop(receipt) for receipt in wanted if receipt in self.held]
            self.change_visibility(
                [m["ReceiptHandle"] for m, start in entries if start is not None], 0
            )
            self.hand_back([message for message, start in entries if start is None])
        return len(entries)

    def hand_back(self, waiting):
        """Give back messages whose task never started as fresh ones: each is sent again, body
        unchanged (its task id, attempt and run_after), then the copy held is deleted.

        Made visible instead, each would have spent one of its receives (ApproximateReceiveCount)
        without a run, and behind slow tasks reached the DLQ (the queue's RedrivePolicy, after
        maxReceiveCount receives) without ever running. Sent before the delete: interrupted
        between the two, the task runs twice (at least once, as SQS is anyway), never not at all;
        a message whose send fails is made visible, as before, and so are the ones after it (an
        unreachable SQS would make a stop wait out one client timeout a message). One SendMessage
        each, not a SendMessageBatch: that caps a batch's total size near one message's own cap,
        so it would need splitting by size; this runs only when a task overruns or the worker
        stops.
        """
        sent, unsent = [], []
        for message in waiting:
            if unsent:  # SQS refused or did not answer: the rest are made visible, in one call
                unsent.append(message["ReceiptHandle"])
                continue
            try:
                self.backend.send(message["Body"], remaining_delay(message["Body"]))
            except Exception:
                logger.warning("Could not re-send message %s", message["MessageId"], exc_info=True)
                unsent.append(message["ReceiptHandle"])
            else:
                sent.append(message["ReceiptHandle"])
        self.change_visibility(unsent, 0)
        for _, failure in self.each_batch(self.client.delete_message_batch, sent):
            # Its held copy comes back after the visibility timeout: the task runs twice.
            logger.warning("Could not delete a message after re-sending it: %s", failure)

    def extend(self):
        with self.call_lock:
            self._let_slow_tasks_go()
            with self.state_lock:
                receipts = list(self.held)
            seconds = min(self.visibility_timeout, int(self.left()))
            if seconds > 0:  # else SQS shows them again now, whatever it is asked
                self.change_visibility(receipts, seconds)

    def _let_slow_tasks_go(self):
        now = time.monotonic()
        with self.state_lock:
            running = {r: entry for r, entry in self.held.items() if entry[1] is not None}
            overdue = [r for r, (_, start) in running.items() if now - start > self.limit]
            slow = any(now - start > self.visibility_timeout for _, start in running.values())
            # Also before the 12 h run out: their tasks could not finish hidden any more.
            hand_over = slow or not self.can_finish(now)
            waiting = (
                [r for r, (_, start) in self.held.items() if start is None] if hand_over else []
            )
            for receipt in overdue:
                logger.error(
                    "The task of message %s has run %d s, past JOB_TIMEOUT and a grace: no longer"
                    " keeping it hidden (it will be received again; the worker's /healthz says"
                    " stalled)",
                    self.held.pop(receipt)[0]["MessageId"],
                    now - running[receipt][1],
                )
            waiting = [self.held.pop(receipt)[0] for receipt in waiting]
        if waiting:
            logger.info(
                "%s: handing %d waiting message(s) back to other workers",
                "A task has run longer than the visibility timeout"
                if slow
                else "Held nearly as long as SQS allows (12 h from the receive)",
                len(waiting),
            )
            self.hand_back(waiting)

    def change_visibility(self, receipts, seconds):
        failed = self.each_batch(
            self.client.change_message_visibility_batch, receipts, VisibilityTimeout=seconds
        )
        for receipt, failure in failed:
            with self.state_lock:
                still_held = receipt in self.held
            if still_held or seconds == 0:  # else it was deleted meanwhile: nothing to say
                logger.warning("Could not change the visibility of a message: %s", failure)

    def each_batch(self, call, receipts, **fields):
        """Make the SQS …Batch `call` for `receipts`, 10 at a time; returns (receipt, failure) for
        each entry SQS refused (a call that fails as a whole is logged here)."""
        failed = []
        for first in range(0, len(receipts), self.BATCH):
            chunk = receipts[first : first + self.BATCH]
            entries = [
                {"Id": str(n), "ReceiptHandle": receipt, **fields}
                for n, receipt in enumerate(chunk)
            ]
            try:
                answer = call(QueueUrl=self.queue_url, Entries=entries)
            except Exception:
                logger.warning("SQS %s failed for held messages", call.__name__, exc_info=True)
                continue
            failed += [(chunk[int(f["Id"])], f) for f in answer.get("Failed", [])]
        return failed

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
            logger.warning("Left mid-batch: gave back %d held message(s)", released)
