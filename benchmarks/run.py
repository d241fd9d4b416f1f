"""Set up the fixtures, run the chosen benchmarks, write latest.md and the chart."""

import math
import time

from . import dashboard, end_to_end, fixtures, flush, machine, memory, record, server, server_report
from .harness import BASELINE, LIMIT, format_bytes, format_rate, format_spread, ours_of
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
        body, results = record.run(options, post_ids, redis_client)
        sections.append(
            Section(
                "1. Record path",
                "One timeline request serving 20 posts (a random page of the newest posts, one of"
                f" {record.VIEWERS} logged-in viewers), timed around the recording call only: the"
                " latency it adds to a request. The viewer is already loaded here; section 3 shows"
                " what resolving it costs. Redis contenders start each round from an empty Redis"
                " database, so de-duplication has the same work to do for each.",
                body,
            )
        )
        headlines += record_headlines(results)
    if "flush" in options.only:
        body, by_size = flush.run(options, post_ids, redis_client)
        sections.append(
            Section(
                "2. Flush",
                "Applying N distinct pending posts (1 or 2 impressions each, spread over the whole"
                f" table of {len(post_ids):,} posts) to PostgreSQL. Every run is checked: the"
                " table's impression total must grow by exactly the pending count. The table is"
                " vacuumed (untimed) before each run so nobody pays for another's dead rows."
                " Ours starts from counts recorded in Redis and includes the Redis snapshot, the"
                " ledger row and the snapshot deletion; the others start from a Python dict or"
                " a file, which favours them.",
                body,
            )
        )
        chart_path = options.output.parent / CHART_NAME
        flush_chart(chart_path, by_size)
        chart = CHART_NAME
        headlines += flush_headlines(by_size)
    if "e2e" in options.only:
        body, overheads = end_to_end.run(options, redis_client)
        sections.append(Section("3. End to end", "", body))
        for endpoint, (percent, added, share) in overheads.items():
            headlines.append(
                f"End to end, {endpoint}: recording takes **{share:.2f} %** of the request time"
                f" (timed inside the requests); on vs off: {percent:+.1f} % time per request"
                f" ({added * 1e3:+.2f} ms at p50)."
            )
    if "memory" in options.only:
        body, figures = memory.run(options, post_ids, redis_client)
        sections.append(Section("4. Memory", "", body))
        if figures:
            headlines.append(
                f"Redis memory: **{format_bytes(figures['dedup_bytes'])} per de-dup entry**"
                f" (viewers of a page; {format_bytes(figures['dedup_bytes_heavy'])} for heavy"
                f" viewers), **{format_bytes(figures['counter_bytes'])} per pending (post, day)**"
                f" ({format_bytes(figures['counter_bytes_two_days'])} when every post has two"
                " days pending; goal < 100 B)."
            )
    if "dashboard" in options.only:
        body, figures = dashboard.run(options, redis_client)
        sections.append(Section("5. Dashboard", "", body))
        default = figures.get("dashboard, default (30 days)")
        if default:
            headlines.append(
                f"Dashboard: **{default[0] * 1e3:.0f} ms** median for the default page"
                f" ({default[1]} SQL queries) over a history of {dashboard.HISTORY_POSTS:,}"
                f" posts x {dashboard.HISTORY_DAYS} days."
            )
    if "server" in options.only:
        body, figures = server_report.render(*server.run(options), options)
        sections.append(Section("6. Real server", "", body))
        headlines += server_report.headlines(figures)
    redis_client.flushdb()

    print()
    for section in sections:
        print(section.markdown())
    print("Headlines:\n" + "\n".join(f"- {line}" for line in headlines))
    write_markdown(
        options.output, machine.describe(redis_client), command, headlines, sections, chart
    )


def times(a, b):
    return f"{a / b:.3g}×" if b and not math.isnan(a) and not math.isnan(b) else "n/a"  # noqa: RUF001


def record_headlines(results):
    ours = ours_of(results)
    if ours is None:
        return ["Record path: ours could not be measured (see the table)."]
    lines = []
    for result in results:
        if result is ours or not result.ok:
            continue
        if result.contender.kind == LIMIT:
            share = 100 * ours.median_rate / result.median_rate
            lines.append(
                f"Record path: ours runs at **{share:.0f} %** of the raw limit ({result.name}:"
                f" {format_rate(result.median_rate)} vs {format_rate(ours.median_rate)}"
                " impressions/s)."
            )
        else:
            lines.append(
                f"Record path: ours records **{times(ours.median_rate, result.median_rate)}**"
                f" more impressions/s than {result.name}"
                f" ({format_rate(ours.median_rate)} vs {format_rate(result.median_rate)})."
            )
    return lines


def flush_headlines(by_size):
    lines = []
    costs = flush.per_row_costs(by_size)
    for size, results in by_size.items():
        ours = ours_of(results)
        if ours is None:
            lines.append(f"Flush of {size:,} posts: ours could not be measured (see the table).")
            continue
        parts = []
        ratios = flush.raw_ratios(results)
        if ratios:
            parts.append(
                f"**{format_spread(ratios)}** the time of the same work in SQL alone (paired by"
                f" round; goal ≤ {flush.RAW_GOAL}× from {flush.RAW_GOAL_FROM:,} posts)"  # noqa: RUF001
            )
        if costs and size in costs:
            parts.append(
                f"{costs[size]:.3g} µs per row ({times(costs[size], costs[min(costs)])} the cost"
                f" at {min(costs):,}; goal within ±{flush.PER_ROW_SPREAD:.0%})"
            )
        history = flush.history_ratio(results)
        if history:
            parts.append(
                f"with the per-day history {times(history[1], history[2])} the time without it"
            )
        for result in results:
            if result is ours or not result.ok or result.contender.kind != BASELINE:
                continue
            mark = " (extrapolated)" if result.extrapolated_from else ""
            parts.append(
                f"{times(result.median_seconds, ours.median_seconds)} faster than {result.name}{mark}"
            )
        lines.append(
            f"Flush of {size:,} posts: ours {format_rate(ours.median_rate)} rows/s; "
            + "; ".join(parts)
            + "."
        )
    return lines
