"""Set up the fixtures, run the chosen benchmarks, write latest.md and the chart."""

import math
import time

from . import (
    capacity,
    dashboard,
    end_to_end,
    fixtures,
    flush,
    machine,
    memory,
    midnight,
    parallel,
    record,
    record_scaling,
    scrape,
    server,
    server_report,
    snapshot_read,
    window,
)
from .harness import (
    BASELINE,
    LIMIT,
    Spread,
    format_bytes,
    format_rate,
    format_seconds,
    median,
    ours_of,
    paired_ratios,
)
from .report import Section, flush_chart, write_markdown

CHART_NAME = "flush_scaling.png"
CAPACITY_INTRO = (
    "Every figure below is a formula over this run's measurements (the table \"measured in this"
    ' run" says which section each comes from) and the stated assumptions;'
    " docs/capacity.md explains them and which setting to change when. ECPUs follow ElastiCache"
    " Serverless's rule, the larger of KB transferred and vCPU time in units of a simple"
    " command's (AWS does not publish that unit: a 3-byte SET measured on the same server is it)."
    " Absolute CPU figures come from a shared 2-core machine: re-run them on a quiet one."
)


def bench_redis(url):
    """Our own client for set-up (FLUSHDB, INFO) with a generous timeout, unlike the 50 ms of ours."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=60)


def run_all(options, command):
    start = time.perf_counter()
    post_ids = []
    # The scrape and the snapshot read need no database; the window has one of its own.
    if any(name not in ("scrape", "window", "snapread") for name in options.only):
        fixtures.migrate()
        fixtures.ensure_posts(options.posts)
        post_ids = fixtures.all_post_ids()
    redis_client = bench_redis(options.redis_url)
    redis_client.flushdb()
    print(f"fixtures ready: {len(post_ids):,} posts ({time.perf_counter() - start:.1f} s)")

    sections, headlines, chart = [], [], None
    load_figures = memory_figures = window_figures = None
    if "record" in options.only:
        body, results = record.run(options, post_ids, redis_client)
        sections.append(
            Section(
                "1. Record path",
                "One timeline request serving 20 posts (a random page of the newest posts, one of"
                f" {record.VIEWERS} logged-in viewers, each (viewer, page) once: first views that"
                " all reach Redis), timed around the recording call only: the"
                " latency it adds to a request. The viewer is already loaded here; section 3 shows"
                " what resolving it costs. Redis contenders start each round from an empty Redis"
                " database (and ours with an empty reload cache), so de-duplication has the same"
                " work to do for each.",
                body,
            )
        )
        headlines += record_headlines(results)
    if "load" in options.only:
        body, load_figures = record_scaling.run(options, post_ids)
        sections.append(Section("1b. Record path under load", "", body))
        headlines += record_scaling.headlines(load_figures)
    if "flush" in options.only:
        body, by_size, newest = flush.run(options, post_ids, redis_client)
        sections.append(
            Section(
                "2. Flush",
                f"Applying N distinct pending posts ({flush.impressions_each(options)} each,"
                f"{'' if options.flush_newest else ' spread over the whole table'}"
                f" of {len(post_ids):,} posts) to PostgreSQL. Every"
                " run is checked: the table's impression total must grow by exactly the pending"
                " count. The table is"
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
        headlines += flush_headlines(by_size) + newest_headlines(newest)
    if "parallel" in options.only:
        body, found = parallel.run(options, post_ids, redis_client)
        sections.append(Section("2.1 The flush in K parts across workers", "", body))
        headlines += parallel_headlines(found, options.parallel_posts)
    if "midnight" in options.only:
        body, rounds = midnight.run(options, redis_client)
        sections.append(Section("2.2 The flush around a change of day", "", body))
        headlines += midnight_headlines(rounds)
    if "snapread" in options.only:
        body, snapread = snapshot_read.run(options, redis_client)
        sections.append(Section("2.3 Redis while a flush reads a snapshot", "", body))
        headlines += snapshot_read.headlines(snapread)
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
        memory_figures = figures
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
        ranges = [
            (days, figures.get(name))
            for days, name in (
                (7, "dashboard, 7 days"),
                (30, "dashboard, default (30 days)"),
                (90, "dashboard, 90 days"),
            )
        ]
        if all(found for _, found in ranges):
            worst = max(found[0] for _, found in ranges)
            headlines.append(
                "Dashboard over a history of"
                f" {dashboard.HISTORY_POSTS:,} posts x {dashboard.HISTORY_DAYS} days, median: "
                + ", ".join(f"{days} days **{found[0] * 1e3:.0f} ms**" for days, found in ranges)
                + f" (goal < 100 ms: {'met' if worst < 0.1 else '**missed**'})."
            )
    if "server" in options.only:
        body, figures = server_report.render(*server.run(options), options)
        sections.append(Section("6. Real server", "", body))
        headlines += server_report.headlines(figures)
    if "scrape" in options.only:
        body, figures = scrape.run(options)
        sections.append(Section("7. Metrics scrape", scrape.INTRO, body))
        headlines += scrape_headlines(figures)
    if "window" in options.only:
        body, window_figures = window.run(options, redis_client)
        sections.append(Section("8. One window at scale", "", body))
        headlines += window_headlines(window_figures)
    if "capacity" in options.only:
        # The window run's figures at scale make the section's own smaller flushes needless.
        flush_runs = (
            None if window_figures else window.small_windows(options, post_ids, redis_client)
        )
        found = capacity.measured(load_figures, memory_figures, flush_runs, window_figures)
        assumed = capacity.Assumptions(
            impressions_per_day=options.capacity_impressions,
            peak_to_average=options.capacity_peak,
            distinct_per_window=options.capacity_distinct,
        )
        sections.append(
            Section("9. Capacity plan", CAPACITY_INTRO, capacity.render(assumed, found))
        )
        headlines += capacity.headlines(assumed, found)
    redis_client.flushdb()

    print()
    for section in sections:
        print(section.markdown())
    print("Headlines:\n" + "\n".join(f"- {line}" for line in headlines))
    write_markdown(
        options.output, machine.describe(redis_client), command, headlines, sections, chart
    )


def window_headlines(found):
    if not found:
        return []
    parts = [
        f"K={k}: {f['seconds']:.0f} s ({format_rate(f['rows_per_second'])} posts/s)"
        for k, f in found.items()
    ]
    size = next(iter(found.values()))["posts"]
    return [f"One window of {size:,} pending posts, flushed exact: " + "; ".join(parts) + "."]


def scrape_headlines(figures):
    """One line: a scrape's Redis time, ours and the old scan's, at the smallest and largest size."""
    if not figures:
        return []
    parts = []
    for size in (min(figures), max(figures)):
        ours, old = figures[size]["ours"][0][1], figures[size]["old"][0][1]
        parts.append(
            f"at {size:,} pending counters ours {format_seconds(ours)}, the old full scan"
            f" {format_seconds(old)} ({times(old, ours)})"
        )
    return ["Metrics scrape, Redis time: " + "; ".join(parts) + "."]


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
            share = times(ours.median_rate, result.median_rate)
            lines.append(
                f"Record path, first views, one process (latency table): ours"
                f" {format_rate(ours.median_rate)} impressions/s, **{share}** the rate of"
                f" {result.name} ({format_rate(result.median_rate)}); section 1b pairs them"
                " round by round."
            )
        else:
            lines.append(
                f"Record path: ours records **{times(ours.median_rate, result.median_rate)}**"
                f" more impressions/s than {result.name}"
                f" ({format_rate(ours.median_rate)} vs {format_rate(result.median_rate)})."
            )
    return lines


def parallel_headlines(found, rows):
    one = found.get(1)
    parts = []
    for k, runs in found.items():
        wall = [run["seconds"] for run in runs]
        text = f"K={k} **{Spread.of(wall).median:.1f} s**"
        if one and k != 1:
            ratios = paired_ratios(wall, [run["seconds"] for run in one])
            text += f" ({Spread.of(ratios).text()} the time at K=1)"
        db = Spread.of([run["db"] / rows * 1e6 for run in runs]).median
        parts.append(f"{text}, database CPU {db:.1f} µs per row")
    return [f"One window of {rows:,} posts flushed in K parts at once: " + "; ".join(parts) + "."]


def midnight_headlines(rounds):
    found = midnight.ratios(rounds)
    if not found:
        return ["Around a change of day: no flush ran during the roll-up (it was too quick)."]
    worst = max(found)
    by_round = [max(r["during"]) / median(r["usual"]) for r in rounds if r["during"]]
    return [
        "Around a change of day (the roll-up of 100,000 posts over 400 days running): each flush"
        f" took **{Spread.of(found).text()}** its usual time; each round's worst"
        f" {', '.join(f'{x:.2f}' for x in by_round)}, the worst {worst:.2f}× (goal ≤"  # noqa: RUF001
        f" {midnight.GOAL}×: {'met' if worst <= midnight.GOAL else '**missed**'}; the machine"  # noqa: RUF001
        f" alone, the slowest usual flush ÷ usual: {Spread.of(midnight.noise(rounds)).text()});"
        " each flush while it runs ÷ the next with it paused (the same state of the history):"
        f" {Spread.of(midnight.paired(rounds)).text()}; each round's worst ÷ its worst usual"
        f" flush (as many flushes): {Spread.of(midnight.tails(rounds)).text()}."
    ]


def newest_headlines(newest):
    """The cost per row on the newest posts (flush.newest_pass), as one headline."""
    costs = flush.per_row_costs(newest)
    if len(costs) < 2:
        return []
    parts = []
    for size, cost in costs.items():
        relative, verdict = flush.spread_verdict(costs, size)
        parts.append(
            f"{cost:.3g} µs at {size:,}"
            + ("" if size == min(costs) else f" ({relative:.2f}×, {verdict})")  # noqa: RUF001
        )
    return [
        "Flush of the newest posts (the ones timelines serve), ours' cost per row: "
        + ", ".join(parts)
        + f" (goal within ±{flush.PER_ROW_SPREAD:.0%} of the cost at {min(costs):,})."
    ]


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
                f"**{Spread.of(ratios).text()}** the time of the same work in SQL alone (paired"
                f" by round; goal ≤ {flush.RAW_GOAL}× from {flush.RAW_GOAL_FROM:,} posts)"  # noqa: RUF001
            )
        if size in costs:
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
