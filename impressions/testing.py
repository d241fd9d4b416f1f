"""For a project's own tests: start a test from an empty impression buffer."""

import re

from . import keys
from .conf import conf
from .redis_client import get_flush_client, primaries, reset_clients
from .schedule import backoff

# The glob characters SCAN's MATCH reads in a prefix (IMPRESSIONS_KEY_PREFIX may hold them).
GLOB = re.compile(r"([*?\[\]\\])")


def empty_buffer():
    """Delete the buffer's keys (IMPRESSIONS_KEY_PREFIX's, on every primary: the pending counts,
    the viewers seen, the schedule guard) and forget what this process knew of them. For tests
    only: the counts not yet flushed are lost. With IMPRESSIONS_ENABLED off, Redis is left alone
    (a CI without one)."""
    reset_clients()  # the pairs this process knew Redis de-duplicates, a hold-off
    backoff.succeeded()  # a wait after a failed enqueue
    if not conf.ENABLED:
        return
    prefix = conf.KEY_PREFIX
    # {imp}:…, {imp:<shard>}:…, {imp:ip:<digest>}:…, and none of a prefix "imp:3", "imp:ip",
    # "imp:x" or "imp-2" (keys.own_keys).
    ours = keys.own_keys(prefix)
    escaped = GLOB.sub(r"\\\1", prefix)
    for node in primaries(get_flush_client()).values():
        # One key a command: a cluster node refuses one naming keys of several slots.
        with node.pipeline(transaction=False) as pipe:
            for pattern in (f"{{{escaped}}}:*", f"{{{escaped}:*"):
                for key in node.scan_iter(match=pattern, count=1000):
                    if ours.match(key):
                        pipe.unlink(key)
            pipe.execute()
