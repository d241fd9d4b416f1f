"""The load test, short: gunicorn + runworker on SQS + a private Redis, exact counts after a flush.

`make loadtest` runs the long version (50 clients for 60 s on >= 100,000 posts, with and without a
Redis outage). Here one stack serves both runs (--then-redis-outage): the steady run, then the
outage run on restarted servers and an emptied buffer, as a run of its own would start.
"""

import re

import pytest


@pytest.fixture(scope="module")
def steady_then_outage(run_loadtest):
    """The two runs' outputs, (steady, outage)."""
    # A record call slower than the page's 50 ms budget drops its impressions by design; on a
    # starved 2-core test machine a few did, so the exact (steady) run gives the record call 1 s.
    # (The outage run keeps the 50 ms it always ran with. With 1 s, one run saw /readyz answer
    # 200 inside the outage; the likely cause, a cached answer counted from when its probes ended
    # rather than started, is fixed in casusult/health.py.)
    # 3 s steady: the counts are exact or not whatever the length; the load's flush task (2 s
    # after the first view) mostly runs inside it, else in the final flush. 6 s outage: Redis is
    # down from 2.1 s to 3.9 s (and until a probe saw it down), up 2 s after.
    output = run_loadtest(
        "--clients", "10", "--duration", "3", "--redis-timeout", "1", "--then-redis-outage", "6"
    )  # fmt: skip
    # Each run starts its servers ("web: …"); the stack's preparation comes first, with the steady.
    preparation, steady, outage = re.split(r"^(?=web: )", output, flags=re.M)
    assert "with a Redis outage" in outage and "with a Redis outage" not in steady
    assert steady.rstrip().splitlines()[-1] == "PASS"  # and the outage run's, run_loadtest checks
    return preparation + steady, outage


def test_short_load_counts_exactly(steady_then_outage):
    steady, _ = steady_then_outage
    requests = int(re.search(r"requests: (\d+)", steady).group(1))
    assert requests >= 10  # every client got at least one page, even on a loaded machine
    assert "5xx: 0" in steady
    assert re.search(r"impressions expected: (\d+); in the database: \1 ", steady)
    assert re.search(r"data: 5 demo users, [\d,]+ posts", steady)


def test_short_load_survives_a_redis_outage(steady_then_outage):
    _, outage = steady_then_outage
    assert "[ok] /readyz answered 503 throughout the outage" in outage
    assert "[ok] counting resumed without a restart" in outage
    assert "5xx: 0" in outage
