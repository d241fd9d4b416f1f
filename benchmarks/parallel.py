"""The flush in K parts (issue 19, item 2): one window's pending posts flushed by K tasks at once,
each in a process of its own as K workers run them, at each K of --parts, in paired rounds (the
Ks' order rotated each round). Measured: the wall time, and the CPU per row of the PostgreSQL
backends (their /proc counters: the server must run on this machine), of the flushing processes
and of Redis. Every run is checked: the table and the bench day's history grew by exactly the
window's impressions."""

import os
import random
import secrets
import time

from . import bulkfill, fixtures, ours
from .flush import FLUSH_TABLES, bench_day, history_total, impressions_total, reset_history
from .harness import ContenderFailed, Spread, format_seconds, markdown_table, paired_ratios
from .loadworkers import WorkerPool
from .targets import sample_of

TICK = os.sysconf("SC_CLK_TCK")


def backend_cpu(pid):
    """CPU seconds (user + system) process `pid` has used (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def own_cpu():
    times = os.times()
    return times.user + times.system


class FlushPart:
    """In a forked process: one part of a window's flush, as a worker runs the part's task."""

    def __init__(self, index):
        self.index = index

    def flush(self, part, parts, window, batch_size):
        """(seconds, impressions applied, its backend's CPU s, its own CPU s)."""
        from django.db import connection, connections

        connection.ensure_connection()
        backend = connection.connection.info.backend_pid
        db_before, own_before = backend_cpu(backend), own_cpu()
        started = time.perf_counter()
        report = ours.flush_pending()(batch_size=batch_size, part=part, parts=parts, window=window)
        seconds = time.perf_counter() - started
        db_used = backend_cpu(backend) - db_before
        own_used = own_cpu() - own_before
        connections.close_all()
        return seconds, report.impressions_applied, db_used, own_used


def window_of(post_ids, size, seed):
    """`size` random posts, 1 or 2 impressions each, in a random order: each fill call (one
    viewer, one shard) gets posts from the whole table, as real traffic gives each shard."""
    if size > len(post_ids):
        raise ContenderFailed(f"--parallel-posts {size:,} is more than the {len(post_ids):,} posts")
    rng = random.Random(seed)
    chosen = rng.sample(post_ids, size)
    return {post_id: 1 + index % 2 for index, post_id in enumerate(chosen)}


class ParallelRun:
    def __init__(self, options, post_ids, redis_client):
        from impressions import keys

        self.options = options
        self.redis = redis_client
        self.pending = window_of(post_ids, options.parallel_posts, options.seed)
        self.impressions = sum(self.pending.values())
        self.day = keys.day_text(bench_day())
        self.pool = WorkerPool(max(options.parts), FlushPart)

    def prepare(self):
        """Untimed: Redis filled with the window, the table vacuumed, the bench day's rows reset."""
        self.redis.flushdb()
        counted = bulkfill.fill(self.redis, self.pending, self.day)
        if counted != self.impressions:
            raise ContenderFailed(f"the fill counted {counted:,} of {self.impressions:,}")
        fixtures.vacuum_posts()
        reset_history(self.pending if self.options.history_rows == "existing" else ())

    def run(self, parts):
        self.prepare()
        total, history = impressions_total(), history_total()
        redis_before = sample_of(self.redis)
        window = secrets.token_hex(8)
        batch_size = self.options.batch_size
        started = time.perf_counter()
        replies = self.pool.ask_each(
            "flush", [(part, parts, window, batch_size) for part in range(parts)]
        )
        seconds = time.perf_counter() - started
        redis_cpu = sample_of(self.redis).cpu - redis_before.cpu
        grown = impressions_total() - total
        history_grown = tuple(a - b for a, b in zip(history_total(), history, strict=True))
        applied = sum(reply[1] for reply in replies)
        if not applied == grown == self.impressions or history_grown != (grown, grown):
            raise ContenderFailed(
                f"K={parts}: applied {applied:,}, the table grew by {grown:,}, the history by"
                f" {history_grown}, of {self.impressions:,} impressions"
            )
        return {
            "seconds": seconds,
            "parts": sorted(reply[0] for reply in replies),
            "db": sum(reply[2] for reply in replies),
            "python": sum(reply[3] for reply in replies),
            "redis": redis_cpu,
        }

    def close(self):
        self.pool.close()
        self.redis.flushdb()
        reset_history()


def run(options, post_ids, redis_client, log=print):
    """(markdown, {K: [figures of each round]})."""
    parts = options.parts
    log(f"parallel: {options.parallel_posts:,} posts, K={parts}, {options.rounds} round(s)")
    bench = ParallelRun(options, post_ids, redis_client)
    found = {k: [] for k in parts}
    fixtures.warm_tables(FLUSH_TABLES)
    try:
        for round_number in range(options.rounds):
            shift = round_number % len(parts)
            for k in parts[shift:] + parts[:shift]:
                figures = bench.run(k)
                found[k].append(figures)
                log(
                    f"  round {round_number + 1}: K={k}: {figures['seconds']:.2f} s, database"
                    f" CPU {figures['db']:.2f} s, parts {', '.join(f'{s:.1f}' for s in figures['parts'])}"
                )
    finally:
        bench.close()
    return render(options, found, bench.impressions), found


def per_row(values, rows):
    return Spread.of([value / rows * 1e6 for value in values])


def render(options, found, impressions):
    rows_count = options.parallel_posts
    one = found.get(1) or found[min(found)]
    table = []
    for k, runs in found.items():
        wall = [run["seconds"] for run in runs]
        db = [run["db"] for run in runs]
        table.append(
            [
                str(k),
                f"{Spread.of(wall).text(2)} s",
                Spread.of(paired_ratios(wall, [run["seconds"] for run in one])).text(2),
                f"{Spread.of([rows_count / s for s in wall]).median:,.0f}",
                f"{per_row(db, rows_count).text(2)} µs",
                Spread.of(paired_ratios(db, [run["db"] for run in one])).text(2),
                f"{per_row([run['python'] for run in runs], rows_count).text(2)} µs",
                f"{per_row([run['redis'] for run in runs], rows_count).text(2)} µs",
                ", ".join(format_seconds(s) for s in runs[len(runs) // 2]["parts"]),
            ]
        )
    return (
        f"One window of {rows_count:,} distinct posts ({impressions:,} impressions: half the"
        " posts twice, by another viewer, so in another shard), filled into Redis by the RECORD"
        " script (`benchmarks/bulkfill.py`, untimed), each post in a shard picked by its viewer,"
        f" flushed with IMPRESSIONS_FLUSH_PARTS = K: K tasks started together, each in a forked"
        f" process of its own (as K workers run them), against the table of {options.posts:,}"
        f" posts; {options.rounds} paired round(s), the Ks' order rotated each round; history"
        f" rows of the day {options.history_rows} (--history-rows). Checked each run: the table"
        " and the day's history and site row grew by exactly the window's impressions. CPU: the"
        " K PostgreSQL backends' (from /proc: user + system, 10 ms ticks; the server's background"
        " writers are not counted), the K flushing processes', Redis's (INFO). Medians (min to"
        " max); ÷ K=1 paired by round.\n\n"
        + markdown_table(
            [
                "K",
                "wall time",
                "÷ K=1",
                "posts/s",
                "database CPU per row",
                "÷ K=1",
                "flush processes' CPU per row",
                "Redis CPU per row",
                "each part (median round)",
            ],
            table,
        )
    )
