"""The request path leaves Redis alone for a while after a call failed slower than it can wait.

IMPRESSIONS_REDIS_TIMEOUT bounds the connection and each reply, not the host name's lookup:
redis-py resolves the host at each connection attempt (a failed connection is not kept, so each
request makes one), and getaddrinfo waits for the system's resolver, 5 s an attempt by default.
A resolver that does not answer (a DNS outage, packets dropped on their way to it) would make
every page wait that long. After such a failure this process's request path counts the
impressions of the calls that follow as lost without trying Redis: for 1 s, doubling to 10 s
while the call that tries again fails slowly too; one call at a time tries, the others still
skip. A call that succeeds, or fails within the timeout (a refused connection, a Redis that does
not answer), ends it. The flush, the worker and the commands are not held off.
"""

import threading
import time

from redis.exceptions import ConnectionError as RedisConnectionError

from .conf import conf


class RedisHeldOff(RedisConnectionError):
    """A call not sent: Redis failed slowly a moment ago (HoldOff)."""


def slow_failure_seconds():
    """How long a failed call may take before it holds the request path off: a Redis that does
    not answer takes about two timeouts (the connection, the reply)."""
    return max(0.5, 4 * conf.REDIS_TIMEOUT)


class HoldOff:
    FIRST, LONGEST = 1.0, 10.0

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.wait = self.until = 0.0
        self.since = 0.0  # when the wait was last set: calls started before belong to that outage
        self.tryer = None  # the thread whose call tries Redis again once the wait is over
        self._lock = threading.Lock()

    def attempt(self):
        """A context for a block that calls Redis: raises RedisHeldOff if the request path is
        held off; a failure of the block slower than slow_failure_seconds() holds it off."""
        return Attempt(self)

    def holding(self):
        if not self.wait:  # no slow failure: one attribute read on the request path
            return False
        me = threading.get_ident()
        with self._lock:
            if self.tryer == me:
                return False
            if self.tryer is not None or self.clock() < self.until:
                return True
            self.tryer = me
            return False

    def ended(self, started, failed):
        now = self.clock()
        slow = failed and now - started > slow_failure_seconds()
        if not (slow or self.wait):
            return
        with self._lock:
            if not slow:
                self.wait = self.until = 0.0
                self.tryer = None
            elif not self.wait or started >= self.since:
                # The first slow failure, or the call that tried once the wait was over.
                self.wait = min(self.LONGEST, 2 * self.wait or self.FIRST)
                self.until = now + self.wait
                self.since = now
                self.tryer = None
            # Else a call already in flight when the wait was set, failing slowly too: the same
            # outage, held off already. Doubling for each (every thread of a busy process waits
            # on the same resolver) made the first wait 10 s, and let a second call try while
            # the one trying was still out.

    def reset(self):
        with self._lock:
            self.wait = self.until = self.since = 0.0
            self.tryer = None


class Attempt:
    """HoldOff.attempt(): a class, not a generator's context manager, for the request path's
    sake (about a fifth of the cost)."""

    __slots__ = ("holdoff", "started")

    def __init__(self, holdoff):
        self.holdoff = holdoff

    def __enter__(self):
        holdoff = self.holdoff
        if holdoff.holding():
            raise RedisHeldOff(
                f"not tried for {holdoff.wait:.0f} s after a call to Redis failed in more than"
                f" {slow_failure_seconds():.2f} s (a host name that does not resolve in time?)"
            )
        self.started = holdoff.clock()

    def __exit__(self, kind, error, traceback):
        self.holdoff.ended(self.started, failed=kind is not None)
        return False


holdoff = HoldOff()
