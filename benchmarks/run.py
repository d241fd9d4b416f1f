"""Set up the fixtures, run the chosen benchmarks, write latest.md and the chart."""

import time

from . import fixtures, flush, machine, record
from .report import Section, flush_chart, write_markdown

CHART_NAME = "flush_scaling.png"


def bench_redis(url):
    """Our own client for set-up (FLUSHDB, INFO) with a generous timeout, unlike the 50 ms of ours."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=60)


def run_all(options, command):
    start = time.perf_counter()
    fixtures.migrate()
    fixtures.ensure_posts(options.posts)
    post_ids = fixtures.all_post_ids()
    redis_client = bench_redis(options.redis_url)
    redis_client.flushdb()
    print(f"fixtures ready: {len(post_ids):,} posts ({time.perf_counter() - start:.1f} s)")

    sections, headlines, chart = [], [], None
    if "record" in options.only:
        body, _results = record.run(options, post_ids, redis_client)
        sections.append(
            Section(
                "Record path",
                "One timeline request serving 20 posts (a random page of the newest posts, one of"
                f" {record.VIEWERS} logged-in viewers), measured around the recording call only:"
                " the added latency per request. Redis contenders start each round from an empty"
                " Redis database, so de-duplication has the same work to do for each.",
                body,
            )
        )
    if "flush" in options.only:
        body, by_size = flush.run(options, post_ids, redis_client)
        sections.append(
            Section(
                "Flush",
                "Applying N distinct pending posts (1 or 2 impressions each, spread over the whole"
                f" table of {len(post_ids):,} posts) to PostgreSQL. Every run is checked: the"
                " table's impression total must grow by exactly the pending count. The table is"
                " vacuumed (untimed) before each run so nobody pays for another's dead rows.",
                body,
            )
        )
        chart_path = options.output.parent / CHART_NAME
        flush_chart(chart_path, by_size)
        chart = CHART_NAME
    redis_client.flushdb()

    for section in sections:
        print()
        print(section.markdown())
    write_markdown(
        options.output, machine.describe(redis_client), command, headlines, sections, chart
    )
