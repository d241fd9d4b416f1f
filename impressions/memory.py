"""Measure Redis bytes per de-duplication entry and per pending counter (figures in the README).

    python -m impressions.memory --redis-url redis://127.0.0.1:6390/0 --yes-empty-this-db

It records real impressions through record_impressions() into that (throw-away!) database and
sums MEMORY USAGE over the keys it made. Not part of the test suite.
"""

import argparse
import os
import sys

import django


def measure(viewers, posts_per_viewer, distinct_posts):
    # Imported once main() has set Django up: these modules reach the models.
    from impressions import keys
    from impressions.conf import conf
    from impressions.recorder import record_impressions
    from impressions.redis_client import get_flush_client

    client = get_flush_client()
    client.flushdb()
    before = client.info("memory")["used_memory"]
    for viewer in range(viewers):
        first = (viewer * posts_per_viewer) % distinct_posts
        page = [1_000_000 + (first + n) % distinct_posts for n in range(posts_per_viewer)]
        record_impressions(f"u:{viewer}", page)
    used = client.info("memory")["used_memory"] - before
    seen_bytes = entries = 0
    for key in client.scan_iter(match=f"{{{conf.KEY_PREFIX}:*}}:seen:*", count=1000):
        seen_bytes += client.memory_usage(key, samples=0)
        entries += client.zcard(key)
    pending_bytes = counters = 0
    for shard in range(conf.SHARDS):
        pending_bytes += client.memory_usage(keys.pending_key(shard), samples=0) or 0
        counters += client.hlen(keys.pending_key(shard))
    client.flushdb()
    return {
        "viewers": viewers,
        "posts per viewer": posts_per_viewer,
        "dedup bytes/entry": round(seen_bytes / entries, 1),
        "pending counters": counters,
        "pending bytes/counter": round(pending_bytes / counters, 1),
        "used_memory delta bytes/impression": round(used / entries, 1),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--yes-empty-this-db", action="store_true", required=True)
    args = parser.parse_args(argv)
    os.environ["REDIS_URL"] = args.redis_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.test")
    django.setup()
    for viewers, per_viewer, distinct in [(20_000, 20, 100_000), (2_000, 200, 100_000)]:
        print(measure(viewers, per_viewer, distinct))
    return 0


if __name__ == "__main__":
    sys.exit(main())
