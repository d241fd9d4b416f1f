"""Log lines rate-limited per reason: the first at once, then one per interval at most, saying
how many it stands for: the recorder's loss lines, the flush's late-window line."""

import math
import threading
import time


class LineLimiter:
    """At most one log line every `interval` seconds for each reason, for that reason's events
    since its last line. A reason without a line in the last `interval` is logged at once: it is
    news."""

    def __init__(self, interval, clock=time.monotonic):
        self._lock = threading.Lock()
        self.interval = interval
        self.clock = clock
        self.not_logged = {}  # reason: (events, amount) since its last line
        self.next_line = {}  # reason: when its next line may be logged
        self.held = 0  # events in no line yet (read without the lock: a hint)

    def note(self, reason, amount=1):
        """Count an event; (events, amount) of its reason for a log line to say, this one's
        included, or None while that reason's last line is less than `interval` old."""
        with self._lock:
            return self._note(reason, amount)

    def _note(self, reason, amount):
        events, total = self.not_logged.get(reason, (0, 0))
        since = (events + 1, total + amount)
        now = self.clock()
        if now < self.next_line.get(reason, -math.inf):
            self.not_logged[reason] = since
            self.held += 1
            return None
        self.next_line[reason] = now + self.interval
        self.not_logged[reason] = (0, 0)
        self.held -= events
        return since

    def take_held(self):
        """{reason: (events, amount)} of the events in no line yet whose reason may have a line
        again (its last one is `interval` old), handed to one caller."""
        with self._lock:
            now = self.clock()
            due = {
                reason: since
                for reason, since in self.not_logged.items()
                if since[0] and now >= self.next_line[reason]
            }
            for reason, (events, _) in due.items():
                self.next_line[reason] = now + self.interval
                self.not_logged[reason] = (0, 0)
                self.held -= events
            return due
