"""How far this host's clock is from Redis's: measured by every record call for free, and by
every flush (one round trip).

The record script counts by Redis's clock (the de-duplication window, the day a view counts on),
so hosts whose clocks differ still count alike. A host's own clock still dates what it does
alone (docs/operations/production.md, "Clocks"): on a web host the hour of the viewers' budgets,
the UTC day of cookie-less digests, the dashboard's "today"; on a worker the flush ids and the
ledger's times, the roll-up's "today" and the history it prunes. Seconds of drift change none of
them much; minutes (a bad boot, time sync stopped) are logged, once every LOG_INTERVAL seconds at
most, for an operator to fix the host's time sync.
"""

import time

from redis_endpoints import redacting_logger

from . import keys, scripts
from .loglines import LineLimiter

logger = redacting_logger(__name__)

# Seconds this host's clock may be off Redis's before it is logged: a reply's latency, a pause of
# the process between reading its clock and the call, well within it.
TOLERANCE = 5.0


class ClockOffset(LineLimiter):
    """This host's clock minus Redis's (seconds) as the last record call found it."""

    LOG_INTERVAL = 600.0

    def __init__(self, clock=time.monotonic):
        super().__init__(self.LOG_INTERVAL, clock)
        self.seconds: float | None = None  # None until a record call or a flush measured it

    def measured(self, sent_at, redis_now):
        """A call sent at `sent_at` (time.time()) ran at `redis_now` (Redis's TIME)."""
        offset = sent_at - redis_now  # the reply's latency makes it a little negative
        self.seconds = offset
        if abs(offset) <= TOLERANCE or self.note("off") is None:
            return
        logger.warning(
            "this host's clock is %.0f s %s Redis's: counts follow Redis's clock, but what this"
            " host dates alone (budgets' hours, the flush ledger's times, the roll-up's and the"
            " dashboard's today) follows its own; fix its time sync (NTP, chrony)",
            abs(offset),
            "ahead of" if offset > 0 else "behind",
            extra={"clock_offset": round(offset, 3)},
        )


offset = ClockOffset()


def time_command():
    """The command that asks Redis's time, on the schedule guard's node (a pipeline may carry
    it: measured() reads its reply)."""
    return ("EVAL", scripts.TIME, 1, keys.guard_key())


def measured(sent_at, reply):
    """Note the offset that the `reply` of time_command() sent at `sent_at` (time.time()) gives;
    returns Redis's time (Unix seconds)."""
    seconds, microseconds = reply
    redis_now = int(seconds) + int(microseconds) / 1_000_000
    offset.measured(sent_at, redis_now)
    return redis_now
