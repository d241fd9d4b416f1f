"""Keeps the SQS messages a worker holds hidden from other workers while it runs their tasks."""

import logging
import threading
import time

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
