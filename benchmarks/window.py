"""One window at the largest scale this machine allows (`--only window`, not in the default run):
--window-posts distinct posts pending (3,000,000 by default), filled fast by bulkfill (checked
against the record path on a sample first), then flushed by K tasks at once (K from
--window-parts), each run in a process of its own as K workers would, and checked exact post by
post. It has a database of its own, <bench database>_window, so the other sections keep their
table of --posts posts."""

import inspect
import secrets
import time

from . import bulkfill, fixtures, ours
from .flush import impressions_total
from .harness import ContenderFailed, format_bytes, format_rate, markdown_table, median, timed
from .loadworkers import WorkerPool
from .targets import sample_of

SAMPLE = 12_000  # posts of the fill's check against record_impressions
SIZES = ("parts", "posts", "impressions", "part_seconds")  # figures that are no measurement


def database_url(url):
    return f"{url.rstrip('/')}_window"


def window_pending(post_ids, size):
    """The newest `size` posts, 1 or 2 impressions each (by id parity, which SQL can check)."""
    if size > len(post_ids):
        raise ContenderFailed(f"the table has {len(post_ids):,} posts, fewer than {size:,}")
    return {post_id: 1 + post_id % 2 for post_id in post_ids[-size:]}


class FlushPart:
    """In a forked process: one part of a window's flush, as a worker runs the part's task."""

    def __init__(self, index):
        self.index = index

    def flush(self, part, parts, window):
        from django.db import connections

        flush_pending = ours.flush_pending()
        kwargs = {"part": part, "parts": parts, "window": window} if parts > 1 else {}
        seconds, report = timed(flush_pending, **kwargs)
        # A backend that ends reports its table statistics: the parent reads them next.
        connections.close_all()
        return seconds, report.impressions_applied


def supports_parts():
    return "parts" in inspect.signature(ours.flush_pending()).parameters


def table_counters():
    """(rows inserted + updated + deleted in the post and impressions tables, WAL position),
    once PostgreSQL has published the counters of backends that just ended (it does so a
    little after they go): read until two reads agree."""
    from django.db import connection

    last = None
    for _ in range(40):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)"
                " FROM pg_stat_user_tables"
                " WHERE (relname = 'casusult_post' OR relname LIKE 'impressions%%')"
                # Not the flushes' temporary batch tables: no table of the database's own, and
                # their counters leave the view when their session ends (a read after one ended
                # gave -18 rows a post).
                " AND schemaname NOT LIKE 'pg\\_temp\\_%%'"
            )
            rows = int(cursor.fetchone()[0])
        wal = fixtures.wal_position()
        if rows == last:
            return rows, wal
        last = rows
        time.sleep(0.25)
    return last, wal


def keep_before(first_id):
    """The window's posts' counts before the flush, for the post-by-post check (untimed)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_window_before")
        cursor.execute(
            "CREATE UNLOGGED TABLE bench_window_before AS"
            " SELECT id, impressions FROM casusult_post WHERE id >= %s",
            [first_id],
        )


def wrong_posts():
    """Window posts whose count did not grow by exactly their pending 1 + id % 2."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM casusult_post p JOIN bench_window_before b USING (id)"
            " WHERE p.impressions - b.impressions <> 1 + p.id %% 2",
            [],
        )
        wrong = cursor.fetchone()[0]
        cursor.execute("DROP TABLE bench_window_before")
    return wrong


def run_one(parts, pending, day, redis_client, log):
    """Fill the window, flush it with `parts` tasks at once, check it; the figures."""
    impressions = sum(pending.values())
    redis_client.flushdb()
    fixtures.vacuum_posts()
    fixtures.vacuum_history()
    empty = int(redis_client.info("memory")["used_memory"])
    fill_seconds, counted = timed(bulkfill.fill, redis_client, pending, day)
    if counted != impressions:
        raise ContenderFailed(f"the fill counted {counted:,} of {impressions:,}")
    memory = int(redis_client.info("memory")["used_memory"]) - empty
    keep_before(min(pending))
    total_before = impressions_total()
    rows_before, wal_before = table_counters()
    redis_before = sample_of(redis_client)
    pool = WorkerPool(parts, FlushPart)
    try:
        window = secrets.token_hex(8)
        start = time.perf_counter()
        replies = pool.ask_each("flush", [(part, parts, window) for part in range(parts)])
        seconds = time.perf_counter() - start
    finally:
        pool.close()
    redis_used = sample_of(redis_client) - redis_before
    rows_after, wal_after = table_counters()
    applied = sum(reply[1] for reply in replies)
    grown = impressions_total() - total_before
    wrong = wrong_posts()
    left = sum(1 for _ in redis_client.scan_iter(match="*:snapshot*", count=1000))
    if applied != impressions or grown != impressions or wrong or left:
        raise ContenderFailed(
            f"K={parts}: applied {applied:,} and the table grew by {grown:,} of {impressions:,}"
            f" impressions; {wrong:,} posts wrong; {left} snapshot keys left in Redis"
        )
    log(
        f"  K={parts}: filled {len(pending):,} posts in {fill_seconds:.1f} s, flushed in"
        f" {seconds:.1f} s ({format_rate(len(pending) / seconds)} posts/s), exact"
    )
    redis_client.flushdb()
    return {
        "parts": parts,
        "posts": len(pending),
        "impressions": impressions,
        "fill_seconds": fill_seconds,
        "seconds": seconds,
        "part_seconds": sorted(reply[0] for reply in replies),
        "rows_per_second": len(pending) / seconds,
        "redis_bytes_per_post": memory / len(pending),
        "writes_per_post": (rows_after - rows_before) / len(pending),
        "wal_bytes_per_post": (wal_after - wal_before) / len(pending),
        "redis_flush_cpu_per_post": redis_used.cpu / len(pending),
        "redis_flush_bytes_per_post": (redis_used.net_in + redis_used.net_out) / len(pending),
    }


def run(options, redis_client, log=print):
    """(markdown, figures) of the section: {parts: figures of that run}."""
    from impressions.recorder import today

    size = options.window_posts
    parts_wanted = options.window_parts
    if not supports_parts():
        missing = [k for k in parts_wanted if k > 1]
        parts_wanted = [k for k in parts_wanted if k == 1]
        log(f"window: the flush takes no parts here: K={missing} not run")
    started = time.perf_counter()
    url = database_url(options.database_url)
    log(f"window: {size:,} pending posts, K={parts_wanted}, database {url.rsplit('/', 1)[1]}")
    with fixtures.switch_database(url):
        fixtures.migrate()
        fixtures.ensure_posts(size)
        pending = window_pending(fixtures.all_post_ids(), size)
        day = today.text()
        sample = dict(list(pending.items())[:SAMPLE])
        keys_compared = bulkfill.verify(redis_client, sample, day)
        log(f"  the fill matches record_impressions on {SAMPLE:,} posts ({keys_compared} keys)")
        runs = []  # (round, figures); the order of the Ks alternates by round
        for round_number in range(options.window_rounds):
            order = parts_wanted if round_number % 2 == 0 else parts_wanted[::-1]
            runs += [(round_number, run_one(k, pending, day, redis_client, log)) for k in order]
    minutes = (time.perf_counter() - started) / 60
    found = medians(runs)
    return render(runs, found, size, keys_compared, minutes), found


def medians(runs):
    """{K: figures}, each measured figure the median over the rounds (the sizes are the same
    every round; part times: the last round's)."""
    by_parts = {}
    for _round, figures in runs:
        by_parts.setdefault(figures["parts"], []).append(figures)
    return {
        parts: {
            key: group[-1][key] if key in SIZES else median([f[key] for f in group])
            for key in group[0]
        }
        for parts, group in sorted(by_parts.items())
    }


def render(runs, found, size, keys_compared, minutes):
    text = (
        f"{size:,} distinct posts pending in one window (1 or 2 impressions each, {size // 2:,}"
        " of them twice: both counts in one day's field), in Redis through the RECORD script"
        f" itself, {bulkfill.PAGE:,} posts a call, pipelined (`benchmarks/bulkfill.py`). Before"
        f" the runs, the fill and `record_impressions` recorded the same {SAMPLE:,}-post sample"
        f" into an empty db each and left identical buffers ({keys_compared} keys compared: every"
        " pending hash, set of days, running totals, armed key and the schedule guard; the"
        " viewers' de-duplication sets, which the flush never reads, are left out: the fill"
        " writes none). Each flush: K tasks, each in a process of its own as K workers run them,"
        " started together; checked post by post (each window post grew by exactly its count),"
        " by the table's total, and by Redis (no snapshot left). The Ks take turns, their order"
        " reversed every other round; K=1 time ÷ K's is paired within a round. Writes: rows"
        " inserted, updated and deleted in the post and impressions tables"
        " (pg_stat_user_tables); WAL: bytes of write-ahead log. The whole section took"
        f" {minutes:.1f} minutes.\n\n"
    )
    rows = []
    for round_number, f in runs:
        one = next((g for r, g in runs if r == round_number and g["parts"] == 1), None)
        speedup = f"{one['seconds'] / f['seconds']:.2f}×" if one else "n/a"  # noqa: RUF001
        rows.append(
            [
                str(round_number + 1),
                str(f["parts"]),
                f"{f['fill_seconds']:.1f} s",
                f"{f['seconds']:.1f} s",
                ", ".join(f"{s:.1f}" for s in f["part_seconds"]),
                format_rate(f["rows_per_second"]),
                speedup,
                format_bytes(f["redis_bytes_per_post"]),
                f"{f['writes_per_post']:.2f}",
                format_bytes(f["wal_bytes_per_post"]),
            ]
        )
    text += markdown_table(
        [
            "round",
            "K (tasks at once)",
            "fill",
            "flush (wall)",
            "each part (s)",
            "posts/s",
            "K=1 time ÷ this",
            "Redis memory per pending post (used_memory delta)",
            "rows written per post",
            "WAL per post",
        ],
        rows,
    )
    return text + "\n"


def small_windows(options, post_ids, redis_client, log=print):
    """The capacity section's own flush measurements, in the bench database: a window of
    --capacity-window-posts posts flushed at each K of --window-parts (the parts the flush
    supports); {K: figures}."""
    from impressions.recorder import today

    parts_wanted = [k for k in options.window_parts if k == 1 or supports_parts()]
    pending = window_pending(post_ids, options.capacity_window_posts)
    log(f"capacity: a window of {len(pending):,} posts flushed at K={parts_wanted}")
    return {k: run_one(k, pending, today.text(), redis_client, log) for k in parts_wanted}
