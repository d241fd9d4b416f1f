"""The load test, short: gunicorn + runworker on SQS + a private Redis, exact counts after a flush.

`make loadtest` runs the long version (50 clients for 60 s on >= 100,000 posts, with and without a
Redis outage).
"""

import re


def test_short_load_counts_exactly(run_loadtest):
    # A record call slower than the page's 50 ms budget drops its impressions by design; on a
    # starved 2-core test machine a few did, so the exact check gives the record call 1 s. (The
    # outage run keeps the 50 ms it always ran with. With 1 s, one run saw /readyz answer 200
    # inside the outage; the likely cause, a cached answer counted from when its probes ended
    # rather than started, is fixed in casusult/health.py.)
    # 3 s: the counts are exact or not whatever the length; the load's flush task (2 s after the
    # first view) mostly runs inside it, else in the final flush.
    output = run_loadtest("--clients", "10", "--duration", "3", "--redis-timeout", "1")
    requests = int(re.search(r"requests: (\d+)", output).group(1))
    assert requests >= 10  # every client got at least one page, even on a loaded machine
    assert "5xx: 0" in output
    assert re.search(r"impressions expected: (\d+); in the database: \1 ", output)
    assert re.search(r"data: 5 demo users, [\d,]+ posts", output)


def test_short_load_survives_a_redis_outage(run_loadtest):
    # 6 s: Redis is down from 2.1 s to 3.9 s (and until a probe saw it down), up 2 s after.
    output = run_loadtest("--clients", "10", "--duration", "6", "--redis-outage")
    assert "[ok] /readyz answered 503 throughout the outage" in output
    assert "[ok] counting resumed without a restart" in output
