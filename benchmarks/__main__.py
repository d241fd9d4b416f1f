"""python -m benchmarks: every benchmark in one go, tables printed and written to results/."""

import argparse
import os
import shlex
import sys
import time
import urllib.parse
from pathlib import Path

from casusult.arguments import number, positive_int

RESULTS = Path(__file__).resolve().parent / "results"
ALL = (
    "record",
    "load",
    "flush",
    "parallel",
    "midnight",
    "snapread",
    "e2e",
    "memory",
    "dashboard",
    "server",
    "scrape",
    "capacity",
)
# Sections that run only when --only names them (they take long).
EXTRA = ("window",)
LOAD_TARGETS = ("standalone", "cluster")


def sizes(text):
    try:
        values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of sizes"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive whole numbers")
    return values


def benchmarks(text):
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(chosen) - set(ALL + EXTRA))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown benchmark(s) {unknown}; choose from {ALL + EXTRA}"
        )
    return chosen


def load_targets(text):
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    if not chosen or set(chosen) - set(LOAD_TARGETS):
        raise argparse.ArgumentTypeError(f"choose from {','.join(LOAD_TARGETS)}")
    return chosen


def redis_db_url(text):
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("redis", "rediss", "unix") or parts.path.strip("/") in ("", "0"):
        # Benchmarks FLUSHDB their database: never the default db 0 where dev data lives.
        raise argparse.ArgumentTypeError(f"{text!r}: give a redis:// URL with a db other than 0")
    return text


def parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    env = os.environ.get
    p.add_argument(
        "--database-url",
        default=env("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench"),
        help="PostgreSQL database of its own (created, migrated and filled if missing)",
    )
    p.add_argument(
        "--redis-url",
        type=redis_db_url,
        default=env("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8"),
        help="Redis database the benchmarks may FLUSHDB (never db 0)",
    )
    p.add_argument(
        "--only",
        type=benchmarks,
        default=list(ALL),
        help=f"subset of {','.join(ALL)} (the default), or {','.join(EXTRA)} (only when named)",
    )
    p.add_argument(
        "--rounds", type=positive_int, default=3, help="interleaved rounds per benchmark"
    )
    p.add_argument("--posts", type=positive_int, default=1_000_000, help="posts in the table")
    p.add_argument(
        "--flush-sizes",
        type=sizes,
        default=[10_000, 100_000, 1_000_000],
        help="distinct pending posts per flush, comma-separated (default 10000,100000,1000000)",
    )
    p.add_argument(
        "--snapread-fields",
        type=sizes,
        default=[94_000, 280_000],
        help="fields of the snapshots read while another client waits (section 2.3; default"
        " 94000,280000: one of 16 shards at 1,000,000 and 3,000,000 pending posts)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="ours' flush batches (default: IMPRESSIONS_FLUSH_BATCH_SIZE)",
    )
    p.add_argument(
        "--history-rows",
        choices=["existing", "new"],
        default="existing",
        help="flush: the pending posts have a history row of the day already (the flushes after"
        " a post's first of the day: updates) or not (inserts)",
    )
    p.add_argument(
        "--flush-viewers",
        type=positive_int,
        default=None,
        help="flush: every pending post seen by this many viewers, each impression a counter in"
        " its viewer's shard (each size's table says how many counters a post); default: 1 or 2"
        " (half the posts each)",
    )
    p.add_argument(
        "--flush-newest",
        action="store_true",
        help="flush: the pending posts are the newest ones (as timelines serve them) instead of"
        " posts spread over the whole table",
    )
    p.add_argument(
        "--flush-newest-pass",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="flush: then ours and the same-work SQL again on the newest posts at each size, for"
        " the cost per row there (no effect with --flush-newest)",
    )
    p.add_argument(
        "--flush-baselines",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="flush: also run Django's bulk_update and one UPDATE per row (slow; extrapolated)",
    )
    p.add_argument("--big-size", type=positive_int, default=1_000_000, help="flushes of this many")
    p.add_argument("--big-rounds", type=positive_int, default=1, help="… posts or more: rounds")
    p.add_argument(
        "--bulk-update-cap",
        type=positive_int,
        default=10_000,
        help="bulk_update(batch_size=1000) runs this many rows a round; the rest is extrapolated",
    )
    p.add_argument(
        "--per-row-cap", type=positive_int, default=5_000, help="the same for one UPDATE per row"
    )
    p.add_argument(
        "--requests", type=positive_int, default=2000, help="record path: requests/round"
    )
    p.add_argument(
        "--db-requests", type=positive_int, default=100, help="… for the database contenders"
    )
    p.add_argument(
        "--load-processes",
        type=sizes,
        default=[1, 2, 4, 8],
        help="record path under load: process counts, comma-separated (default 1,2,4,8)",
    )
    p.add_argument(
        "--load-seconds", type=number(0.1, 600), default=2.0, help="… seconds of one timed run"
    )
    p.add_argument(
        "--load-targets",
        type=load_targets,
        default=list(LOAD_TARGETS),
        help="… standalone (the --redis-url db), cluster (a 3-node cluster started for it)",
    )
    p.add_argument(
        "--load-pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="… and each target again with its Redis server(s) started for it and pinned to one"
        " CPU, every client (load processes, redis-benchmark) to the others: clients on other"
        " hosts, modelled on one machine (Linux, 2 CPUs or more; reported beside the unpinned;"
        " on by default, --no-load-pin skips it)",
    )
    p.add_argument(
        "--parts",
        type=sizes,
        default=[1, 2, 4],
        help="parallel: IMPRESSIONS_FLUSH_PARTS values K, comma-separated (default 1,2,4)",
    )
    p.add_argument(
        "--parallel-posts",
        type=positive_int,
        default=1_000_000,
        help="… distinct posts pending in the window flushed at each K",
    )
    p.add_argument(
        "--midnight-posts",
        type=positive_int,
        default=20_000,
        help="midnight: posts a window flushed while the daily roll-up runs (and without it)",
    )
    p.add_argument(
        "--midnight-late",
        type=number(0, 1),
        default=0.1,
        help="midnight: the share of a window's posts with counts of the ended day (default 0.1,"
        " in every window: harsher than a site, where the roll-up starts after the window that"
        " held midnight is flushed)",
    )
    p.add_argument(
        "--window-posts",
        type=positive_int,
        default=3_000_000,
        help="window (--only window): distinct posts pending in the one window flushed",
    )
    p.add_argument(
        "--window-parts",
        type=sizes,
        default=[1, 4],
        help="… flush tasks run at once, comma-separated (default 1,4)",
    )
    p.add_argument(
        "--window-rounds",
        type=positive_int,
        default=2,
        help="… rounds of the Ks, their order reversed every other round (default 2)",
    )
    p.add_argument(
        "--capacity-impressions",
        type=positive_int,
        default=1_000_000_000,
        help="capacity plan: counted impressions a day",
    )
    p.add_argument(
        "--capacity-peak",
        type=number(1, 100),
        default=3.0,
        help="… peak-to-average ratio (busiest second ÷ the day's mean)",
    )
    p.add_argument(
        "--capacity-distinct",
        type=positive_int,
        default=3_000_000,
        help="… distinct (post, day) pairs pending in a peak window",
    )
    p.add_argument(
        "--capacity-window-posts",
        type=positive_int,
        default=100_000,
        help="… posts of the window it flushes itself at each --window-parts K",
    )
    p.add_argument(
        "--e2e-requests", type=positive_int, default=100, help="timeline requests per round"
    )
    p.add_argument(
        "--memory-entries", type=positive_int, default=200_000, help="impressions per memory sample"
    )
    p.add_argument(
        "--profile-size",
        type=int,
        default=None,
        help="after the rounds, cProfile ours once: the record path and a flush this big"
        " (default: the largest --flush-sizes; 0: no profile)",
    )
    p.add_argument(
        "--dashboard-requests", type=positive_int, default=20, help="dashboard: requests per page"
    )
    p.add_argument(
        "--server-posts",
        type=sizes,
        default=None,
        help="real server: table sizes, comma-separated (default 10000 and --posts); each size"
        " but --posts gets a database of its own, named <database>_<size>",
    )
    p.add_argument(
        "--server-depth", type=positive_int, default=500, help="real server: the deep page"
    )
    p.add_argument(
        "--server-duration", type=positive_int, default=5, help="real server: wrk seconds a case"
    )
    p.add_argument(
        "--server-rounds",
        type=positive_int,
        # Rounds, not long runs, are what the paired ratios need on a noisy machine; an even
        # number gives each side of each ratio the first place as often.
        default=4,
        help="real server: rounds of (page, viewer) groups (even: each side first as often)",
    )
    p.add_argument(
        "--server-connections", type=positive_int, default=12, help="real server: wrk -c"
    )
    p.add_argument(
        "--scrape-sizes",
        type=sizes,
        default=[10, 10_000_000],
        help="scrape: pending counters in the buffer, comma-separated (default 10,10000000;"
        " 10 million take about 1 GB of Redis memory for a minute)",
    )
    p.add_argument("--seed", type=int, default=5, help="for the random pages, posts, viewers")
    p.add_argument(
        "--output", type=Path, default=RESULTS / "latest.md", help="markdown file (chart beside it)"
    )
    return p


def main(argv=None):
    options = parser().parse_args(argv)
    if options.profile_size is None:
        options.profile_size = max(options.flush_sizes)
    if options.server_posts is None:
        options.server_posts = sorted({10_000, options.posts})
    # The benchmark's own database and Redis db, whatever DATABASE_URL/REDIS_URL say for dev.
    os.environ["DATABASE_URL"] = options.database_url
    os.environ["REDIS_URL"] = options.redis_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.test")

    from . import fixtures

    started = time.perf_counter()
    print(f"database: {fixtures.ensure_database(options.database_url)}")
    import django

    django.setup()
    from .run import run_all

    run_all(options, command=("python -m benchmarks " + shlex.join(argv or sys.argv[1:])).strip())
    print(f"done in {time.perf_counter() - started:.0f} s; results in {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
