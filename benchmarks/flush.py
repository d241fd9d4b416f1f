"""Flush: N distinct pending posts applied to a table of >= 1M posts, ours against the others."""

import random
from datetime import UTC, datetime

from . import fixtures, ours, profile
from .harness import (
    BASELINE,
    LIMIT,
    OURS,
    Contender,
    ContenderFailed,
    Measurement,
    Spread,
    format_rate,
    format_ratio,
    format_seconds,
    markdown_table,
    median,
    ours_of,
    paired_ratios,
    ratio,
    run_interleaved,
    timed,
)
from .sqlraw import RawSqlScripts

RECORD_CHUNK = 500  # post ids per record_impressions call while loading Redis (untimed)
# Ours with the history switched off (impressions.ledger.WRITE_HISTORY): what the history costs.
NO_HISTORY = "ours, no history"
# Ours in a session whose WAL compresses full-page images (a PostgreSQL server setting that a
# superuser may SET; off by default): what the server's setting does to the cost per row.
ZSTD = "ours, wal_compression = zstd"
# The raw contender doing the same work as ours (totals, per-day history, site rows).
SAME_WORK = "SQL alone: the same work (psql)"
# The goal of issue 11: a flush with the history takes at most this many times one without.
HISTORY_GOAL = 1.5
# Issue 19's goals: ours at most this many times the same-work SQL (at 100,000 posts and more),
# and ours' cost per row at every size within this fraction of its cost at the smallest size.
RAW_GOAL = 1.3
RAW_GOAL_FROM = 100_000
PER_ROW_SPREAD = 0.25
# What a flush reads and writes, read into the page cache before each size's rounds.
FLUSH_TABLES = (
    "casusult_post",
    "impressions_daily_open",
    "impressions_daily_leaders",
    "impressions_site_daily",
)
# The impressions are recorded on a day of their own, far from the dashboard's seeded history:
# each run starts from the same rows of that day (--history-rows), and the dashboard benchmark's
# days are never touched.
BENCH_MOMENT = datetime(2100, 1, 1, 12, tzinfo=UTC)


def pending_workload(post_ids, size, seed, viewers=None, newest=False):
    """`size` distinct posts spread over the whole table, or the newest `size` (--flush-newest:
    as timelines serve them, ids that share their first digits), with 1 or 2 pending impressions
    each, or `viewers` each (--flush-viewers: each from another viewer, so in as many shards as
    those viewers fall in)."""
    if size > len(post_ids):
        raise SystemExit(f"--flush-sizes {size:,} is more than the {len(post_ids):,} posts")
    if newest:
        chosen = random.Random(seed + size).sample(sorted(post_ids)[-size:], size)
    else:
        chosen = random.Random(seed + size).sample(post_ids, size)
    counts = {post_id: viewers or 1 + index % 2 for index, post_id in enumerate(chosen)}
    # In id order for everyone: ours sorts anyway, and sorted keys walk the index and the heap in
    # order, and the raw limit deserves that best case too.
    return dict(sorted(counts.items()))


def impressions_each(options):
    """The workload's pending impressions per post, in words."""
    each = (
        f"{options.flush_viewers} impressions from as many viewers"
        if options.flush_viewers
        else "1 or 2 impressions"
    )
    return f"the newest posts, {each}" if getattr(options, "flush_newest", False) else each


def bench_day():
    from impressions import periods

    return periods.day_of(BENCH_MOMENT)


def impressions_total():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(impressions), 0) FROM casusult_post")
        return int(cursor.fetchone()[0])


def history_total():
    """The bench day's impressions in the open days' rows and in its site-wide row."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT coalesce(sum(count), 0) FROM impressions_daily_open WHERE day = %s),"
            " (SELECT coalesce(sum(count), 0) FROM impressions_site_daily WHERE day = %s)",
            [bench_day(), bench_day()],
        )
        return tuple(int(n) for n in cursor.fetchone())


def reset_history(post_ids=()):
    """Delete the bench day's history (untimed); then give `post_ids` a row of that day each
    (--history-rows existing: the runs update them, as the flushes after a post's first of the
    day do), or none (new: every run inserts them, as a post's first flush of the day does)."""
    from django.db import connection

    with connection.cursor() as cursor:
        for table in (
            "impressions_daily_open",
            "impressions_daily_leaders",
            "impressions_site_daily",
        ):
            cursor.execute(f"DELETE FROM {table} WHERE day = %s", [bench_day()])
        if post_ids:
            cursor.execute(
                "INSERT INTO impressions_daily_open (object_id, day, count)"
                " SELECT id, %s, 1 FROM unnest(%s::bigint[]) AS id ORDER BY id",
                [bench_day(), list(post_ids)],
            )
        # The benchmark database may run without autovacuum (this machine's does).
        cursor.execute("VACUUM ANALYZE impressions_daily_open")
        cursor.execute("VACUUM ANALYZE impressions_daily_leaders")


def verified(run, expected_total, history=False):
    """Wrap a run so its effect is checked (untimed): a wrong total fails the row; with
    `history`, the bench day's open rows and site row must have grown by the same total. The
    WAL the run wrote goes in the measurement's counters."""

    def checked():
        before, history_before = impressions_total(), history_total()
        wal_before = fixtures.wal_position()
        measurement = run()
        measurement.counters["wal_bytes"] = fixtures.wal_position() - wal_before
        applied = impressions_total() - before
        expected = expected_total(measurement)
        if applied != expected:
            raise ContenderFailed(f"applied {applied:,} impressions, expected {expected:,}")
        added = tuple(a - b for a, b in zip(history_total(), history_before, strict=True))
        if history and added != (expected, expected):
            raise ContenderFailed(f"the history grew by {added} impressions, expected {expected:,}")
        return measurement

    return checked


def capped(pending, cap):
    """The first `cap` items of the workload, for contenders too slow to run it whole."""
    items = list(pending.items())
    return dict(items[:cap]) if cap and len(items) > cap else pending


def scaled(measurement, size):
    """Scale a partial run linearly to `size` rows (the per-row cost of these does not grow)."""
    if measurement.units >= size:
        return measurement
    return Measurement(
        seconds=measurement.seconds * size / measurement.units,
        units=size,
        measured_units=measurement.units,
    )


class FlushWorkload:
    """One size: the pending counts and a runner per contender, all on the same rows."""

    def __init__(self, options, post_ids, size, redis_client, newest=None):
        self.options = options
        self.redis = redis_client
        self.size = size
        newest = options.flush_newest if newest is None else newest
        self.pending = pending_workload(post_ids, size, options.seed, options.flush_viewers, newest)
        rows = self.shard_rows()
        self.counters = len(rows)  # the (shard, post, day) counters ours reads
        self.sql = RawSqlScripts(options.database_url, self.pending, rows)

    def total(self, pending):
        return sum(pending.values())

    # -- ours ---------------------------------------------------------------------------------
    def load_redis(self):
        """Record the workload's impressions through our recorder (untimed, Redis flushed first)."""
        record_impressions = ours.record_impressions()
        self.redis.flushdb()
        with ours.patient_redis():
            self._record_all(record_impressions)

    def _record_all(self, record_impressions):
        for level in range(1, max(self.pending.values()) + 1):
            ids = [post_id for post_id, count in self.pending.items() if count >= level]
            for start in range(0, len(ids), RECORD_CHUNK):
                # A viewer per chunk spreads the pending counts over the shards, as real
                # traffic does; every chunk must be counted or the flush check fails.
                result = record_impressions(
                    f"s:bench-{level}-{start}", ids[start : start + RECORD_CHUNK], now=BENCH_MOMENT
                )
                if result.lost:
                    raise ContenderFailed("loading Redis lost impressions (Redis timeouts)")

    def shard_rows(self):
        """[(post id, day, count)]: every pending counter of every Redis shard after ours loads
        the workload (untimed): the rows ours' flush reads, which the same-work SQL gets too."""
        from impressions import keys
        from impressions.conf import conf

        self.load_redis()
        rows = []
        for shard in range(conf.SHARDS):
            for key in keys.pending_group_keys(shard):
                for field, count in self.redis.hgetall(key).items():
                    post_id, _, day = field.partition(b":")
                    rows.append((int(post_id), keys.parse_day(day), int(count)))
        self.redis.flushdb()
        return rows

    def reset_history(self):
        existing = self.options.history_rows == "existing"
        reset_history(self.pending if existing else ())

    def prepare_ours(self):
        fixtures.vacuum_posts()
        self.reset_history()
        fixtures.vacuum_history()
        seconds, _ = timed(self.load_redis)
        print(f"    (loaded {self.size:,} pending posts into Redis in {seconds:.1f} s, untimed)")
        ours.connected_flush_client()
        fixtures.checkpoint()

    def prepare_same_work(self):
        fixtures.vacuum_posts()
        self.reset_history()
        fixtures.vacuum_history()
        fixtures.checkpoint()

    def run_ours(self):
        flush_pending = ours.flush_pending()
        seconds, _report = timed(flush_pending, batch_size=self.options.batch_size)
        return Measurement(seconds=seconds, units=self.size)

    def run_ours_compressed(self):
        with fixtures.wal_compression("zstd") as taken:
            if not taken:
                raise ContenderFailed("the server refused SET wal_compression = zstd")
            return self.run_ours()

    def run_ours_without_history(self):
        with ours.history_off():
            return self.run_ours()

    # -- Django ---------------------------------------------------------------------------------
    def run_bulk_update(self, batch_size, cap, jit=True):
        from django.db import connection, transaction
        from django.db.models import F

        from casusult.models import Post

        pending = capped(self.pending, cap)

        def apply():
            # F() keeps it an atomic increment like ours; building the objects is part of the cost.
            posts = [Post(id=pk, impressions=F("impressions") + n) for pk, n in pending.items()]
            with transaction.atomic():
                if not jit:
                    with connection.cursor() as cursor:
                        cursor.execute("SET LOCAL jit = off")
                Post.objects.bulk_update(posts, ["impressions"], batch_size=batch_size)

        seconds, _ = timed(apply)
        return Measurement(seconds=seconds, units=len(pending))

    def run_update_per_row(self):
        from django.db import transaction
        from django.db.models import F

        from casusult.models import Post

        pending = capped(self.pending, self.options.per_row_cap)

        def apply():
            with transaction.atomic():
                for pk, n in pending.items():
                    Post.objects.filter(pk=pk).update(impressions=F("impressions") + n)

        seconds, _ = timed(apply)
        return Measurement(seconds=seconds, units=len(pending))

    def contenders(self, memo, core_only=False):
        vacuum = fixtures.vacuum_posts

        def whole(measurement):
            return self.total(self.pending)

        def part(cap):
            return lambda measurement: self.total(capped(self.pending, cap))

        def extrapolate(run):
            return lambda: scaled(run(), self.size)

        def once(name, run):
            """Measured in the first round it appears, then reused (scaled) at every size."""

            def measure_or_reuse():
                if name not in memo:
                    memo[name] = run()
                return scaled(memo[name], self.size)

            return measure_or_reuse

        bulk_cap, row_cap, big = self.options.bulk_update_cap, self.options.per_row_cap, 10_000
        core = [
            Contender(
                "ours: flush_pending()",
                verified(self.run_ours, whole, history=True),
                OURS,
                self.prepare_ours,
                "Redis snapshot → batches: COPY, UPDATE, history and site upserts, ledger,"
                " commit → delete",
            ),
            Contender(
                SAME_WORK,
                verified(self.sql.run_same_work, whole, history=True),
                LIMIT,
                self.prepare_same_work,
                "the counters ours reads (one row per shard, post and day) from a file: COPY to a"
                " temp table, ANALYZE, one join UPDATE of the totals, one INSERT … ON CONFLICT"
                " into the open day's rows, the site-wide day rows, COMMIT",
            ),
        ]
        history = [
            Contender(
                ZSTD,
                verified(self.run_ours_compressed, whole, history=True),
                ZSTD,
                self.prepare_ours,
                "the same flush in a session with SET wal_compression = zstd (a PostgreSQL"
                " setting, superuser only; off by default): the full-page images compressed",
            ),
            Contender(
                "ours without the history",
                verified(self.run_ours_without_history, whole),
                NO_HISTORY,
                self.prepare_ours,
                "the same flush with the per-day history switched off (a benchmark switch, not a"
                " setting): the totals and the ledger only",
            ),
            Contender(
                "SQL alone: the totals only (psql)",
                verified(self.sql.run_copy, whole),
                LIMIT,
                vacuum,
                "what ours without the history does: COPY to a temp table, ANALYZE, one join"
                " UPDATE, COMMIT",
            ),
        ]
        baselines = [
            Contender(
                "bulk_update(batch_size=1000)",
                extrapolate(verified(lambda: self.run_bulk_update(1000, bulk_cap), part(bulk_cap))),
                BASELINE,
                vacuum,
            ),
            Contender(
                "bulk_update(batch_size=10000)",
                once("bulk10k", verified(lambda: self.run_bulk_update(big, big), part(big))),
                BASELINE,
                vacuum,
                "one 10,000-row statement measured once and reused; PostgreSQL's default JIT"
                " compiles its 10,000-branch CASE",
            ),
            Contender(
                "bulk_update(batch_size=10000), SET jit=off",
                once(
                    "bulk10k-nojit",
                    verified(lambda: self.run_bulk_update(big, big, jit=False), part(big)),
                ),
                BASELINE,
                vacuum,
                "one 10,000-row statement measured once and reused",
            ),
            Contender(
                "one UPDATE per row (ORM, one transaction)",
                extrapolate(verified(self.run_update_per_row, part(row_cap))),
                BASELINE,
                vacuum,
            ),
        ]
        if core_only:
            return core
        return core + history + (baselines if self.options.flush_baselines else [])


def run(options, post_ids, redis_client, log=print):
    """Every size's contenders interleaved; returns (markdown, {size: results}, {size: results
    of the newest posts' pass}) (that pass: see newest_pass)."""
    by_size, memo, counters = {}, {}, {}
    for size in options.flush_sizes:
        rounds = rounds_at(options, size)
        log(f"flush: {size:,} pending posts, {rounds} round(s)")
        workload = FlushWorkload(options, post_ids, size, redis_client)
        counters[size] = workload.counters
        by_size[size] = run_workload(workload, workload.contenders(memo), rounds, log)
    newest = newest_pass(options, post_ids, redis_client, by_size, log)
    text = render(options, by_size, counters, newest)
    if options.profile_size:
        text += "\n\n" + profile_ours(options, post_ids, redis_client, log)
    return text, by_size, newest


def rounds_at(options, size):
    return options.rounds if size < options.big_size else options.big_rounds


def run_workload(workload, contenders, rounds, log):
    try:
        fixtures.warm_tables(FLUSH_TABLES)
        return run_interleaved(contenders, rounds, log)
    finally:
        workload.sql.cleanup()
        reset_history()


def newest_pass(options, post_ids, redis_client, by_size, log=print):
    """{size: results}: ours and the same-work SQL again at each size, on the newest posts (the
    posts timelines serve, so the ones a window's flush mostly holds) instead of posts spread
    over the table; {} with --flush-newest (the main pass is that already) or
    --no-flush-newest-pass. A size that is the whole table is the same posts either way: its
    main results are reused. Why: newest_table's caption."""
    if options.flush_newest or not options.flush_newest_pass:
        return {}
    found = {}
    for size in options.flush_sizes:
        if size >= len(post_ids):
            results = by_size[size]
            found[size] = [r for r in (ours_of(results), same_work_of(results)) if r is not None]
            continue
        rounds = rounds_at(options, size)
        log(f"flush: the newest {size:,} posts, {rounds} round(s)")
        workload = FlushWorkload(options, post_ids, size, redis_client, newest=True)
        found[size] = run_workload(workload, workload.contenders({}, core_only=True), rounds, log)
    return found


def profile_ours(options, post_ids, redis_client, log):
    """One extra, untimed-by-the-table flush of ours under cProfile: where does the time go?"""
    size = options.profile_size
    log(f"flush: profiling ours at {size:,} posts")
    workload = FlushWorkload(options, post_ids, size, redis_client)
    try:
        workload.prepare_ours()
        flush_pending = ours.flush_pending()
        before = impressions_total()
        with profile.statement_timer() as statements:
            _report, stats = profile.profile(flush_pending)
        applied = impressions_total() - before
    except ContenderFailed as error:
        return f"Profile of ours: not run ({error})."
    finally:
        workload.sql.cleanup()
        reset_history()
    check = "" if applied == workload.total(workload.pending) else " (WRONG TOTAL)"
    return (
        profile.render(f"Profile of ours, flush of {size:,} posts{check}", stats)
        + "\n\n"
        + READER_THREAD_CAVEAT
        + "\n\n"
        + profile.render_statements(statements)
    )


# cProfile since Python 3.12 (sys.monitoring) follows every thread on one clock: measured, a
# thread sleeping 0.3 s beside the profiled one sleeping 0.3 s gives a total of 0.3 s, not 0.6.
READER_THREAD_CAVEAT = (
    "The flush reads the snapshots in a thread of its own (`impressions.flush.ReadAhead`)"
    " while it applies batches. cProfile follows both threads on one clock: the total is the"
    " wall time, and while the two overlap a stretch of time goes to whichever thread's function"
    " ran last, so the Redis and Python parts above mix the reader's time with the batches'."
    " What the read costs alone: section 2.3 and the paired runs in docs/benchmarks.md."
)


def render(options, by_size, counters=None, newest=None):
    blocks = []
    counters = counters or {}
    for size, results in by_size.items():
        reference = ours_of(results)
        rows = []
        for result in results:
            if not result.ok:
                rows.append([result.name, result.contender.kind, "-", "FAILED", "-", result.error])
                continue
            note = result.contender.note
            if result.extrapolated_from:
                note = f"**extrapolated** from {result.extrapolated_from:,} rows; " + note
            rows.append(
                [
                    result.name,
                    result.contender.kind,
                    format_seconds(result.median_seconds),
                    format_rate(result.median_rate),
                    format_ratio(
                        ratio(result.median_seconds, reference and reference.median_seconds)
                    ),
                    note.rstrip("; "),
                ]
            )
        rounds = max((len(r.measurements) for r in results), default=0)
        read = (
            f"; {counters[size]:,} counters in Redis, {counters[size] / size:.2f} a post"
            if size in counters
            else ""
        )
        blocks.append(
            f"**{size:,} pending posts** (median of {rounds} round(s){read})\n\n"
            + markdown_table(
                ["contender", "kind", "time", "rows/s", "time ÷ ours", "note"],
                rows,
            )
        )
    blocks.append(goals_table(by_size))
    if newest:
        blocks.append(newest_table(newest))
    blocks.append(wal_table(by_size))
    blocks.append(compressed_table(by_size))
    blocks.append(history_table(by_size))
    blocks.append(scaling_table(by_size))
    return "\n\n".join(blocks)


def same_work_of(results):
    return next((r for r in results if r.name == SAME_WORK and r.ok), None)


def raw_ratios(results):
    """(paired ours ÷ same-work SQL ratios, one per round), or None when either failed."""
    mine, raw = ours_of(results), same_work_of(results)
    if mine is None or raw is None:
        return None
    return paired_ratios(
        [m.seconds for m in mine.measurements], [m.seconds for m in raw.measurements]
    )


def per_row_costs(by_size, of=None):
    """{size: ours' (or `of(results)`'s) median µs per row}, the sizes it ran at."""
    costs = {}
    for size, results in by_size.items():
        mine = (of or ours_of)(results)
        if mine is not None:
            costs[size] = mine.median_seconds / size * 1e6
    return costs


def spread_verdict(costs, size):
    """(cost at `size` ÷ cost at the smallest size, "met"/"**missed**"), or (None, "-")."""
    if size not in costs:
        return None, "-"
    relative = costs[size] / costs[min(costs)]
    return relative, "met" if abs(relative - 1) <= PER_ROW_SPREAD else "**missed**"


def newest_table(newest):
    """The cost per row on the newest posts (newest_pass), ours' against its own at the smallest
    size (issue 19's ±25 % goal), the same-work SQL's beside it."""
    costs, raw_costs = per_row_costs(newest), per_row_costs(newest, same_work_of)
    rows = []
    for size, results in newest.items():
        relative, verdict = spread_verdict(costs, size)
        raw_relative, _ = spread_verdict(raw_costs, size)
        ratios = raw_ratios(results)
        rows.append(
            [
                f"{size:,}",
                f"{costs[size]:.3g} µs" if size in costs else "-",
                f"**{format_ratio(relative)}**" if relative is not None else "-",
                verdict,
                f"{raw_costs[size]:.3g} µs" if size in raw_costs else "-",
                format_ratio(raw_relative) if raw_relative is not None else "-",
                Spread.of(ratios).text() if ratios else "-",
            ]
        )
    return (
        "**Cost per row on the newest posts** (ours and the same-work SQL again at each size, on"
        " the newest posts, the ones timelines serve, instead of posts spread over the table; a"
        " size that is the whole table is the same posts: its figures above. Spread over the"
        " table, each post of a small flush sits on a heap page of its own, read in and, after"
        " the checkpoint each run starts from, logged whole: a cost per page, not per row, that"
        " the same-work SQL pays too. Goal: ours' cost per row within"
        f" ±{PER_ROW_SPREAD:.0%} of its cost at the smallest size)\n\n"
        + markdown_table(
            [
                "pending posts (newest)",
                "ours per row",
                "÷ smallest size",
                "goal",
                "same-work SQL per row",
                "÷ its smallest size",
                "ours ÷ same-work SQL (paired)",
            ],
            rows,
        )
    )


def goals_table(by_size):
    """Issue 19's two goals of the flush: near the same-work SQL, and a flat cost per row."""
    costs = per_row_costs(by_size)
    rows = []
    for size, results in by_size.items():
        ratios = raw_ratios(results)
        raw_verdict = "-"
        if ratios and size >= RAW_GOAL_FROM:
            raw_verdict = "met" if median(ratios) <= RAW_GOAL else "**missed**"
        relative, per_row_verdict = spread_verdict(costs, size)
        rows.append(
            [
                f"{size:,}",
                f"**{Spread.of(ratios).text()}**" if ratios else "not measured",
                raw_verdict,
                f"{costs[size]:.3g} µs" if size in costs else "-",
                format_ratio(relative) if relative is not None else "-",
                per_row_verdict,
            ]
        )
    return (
        "**Issue 19's goals** (posts spread over the table; ours ÷ the same-work SQL: paired by"
        " round, median (min to max);"
        f" goal ≤ {RAW_GOAL}× from {RAW_GOAL_FROM:,} posts on. Ours' cost per row ÷ its cost at"  # noqa: RUF001
        f" the smallest size: goal within ±{PER_ROW_SPREAD:.0%})\n\n"
        + markdown_table(
            [
                "pending posts",
                "ours ÷ same-work SQL",
                "goal",
                "ours per row",
                "÷ smallest size",
                "goal",
            ],
            rows,
        )
    )


def wal_per_row(result, size):
    """A contender's median WAL bytes per row, or None when not measured."""
    if result is None:
        return None
    walled = [m.counters["wal_bytes"] for m in result.measurements if "wal_bytes" in m.counters]
    return median(walled) / size if walled else None


def wal_table(by_size):
    """The WAL each contender writes per row, next to its cost per row: both fall as the flush
    grows, because each run starts right after a CHECKPOINT and the first change to a page after
    one writes the whole page (full_page_writes); 10,000 posts spread over the table touch a page
    or two each, 1,000,000 share them."""
    rows = []
    for size, results in by_size.items():
        contenders = (ours_of(results), same_work_of(results))
        mine, raw = (wal_per_row(result, size) for result in contenders)
        cost = [result.median_seconds / size * 1e6 for result in contenders if result]
        rows.append(
            [
                f"{size:,}",
                f"{mine:,.0f} B" if mine is not None else "-",
                f"{raw:,.0f} B" if raw is not None else "-",
                " / ".join(f"{c:.3g} µs" for c in cost) or "-",
            ]
        )
    return (
        "**WAL written per row** (medians; every run starts right after a CHECKPOINT, and the"
        " first change to a page after one writes the whole page to the WAL: spread over the"
        " table, a small flush pays that for nearly every row, a large one shares its pages. The"
        " cost per row falls with the WAL per row, ours and the raw limit's alike)\n\n"
        + markdown_table(
            ["pending posts", "ours", "same-work SQL", "cost per row: ours / same-work SQL"], rows
        )
    )


def compressed_table(by_size):
    """Ours with the server's wal_compression = zstd against ours with the default (off): the
    time (paired by round), the cost per row against its own at the smallest size, the WAL."""
    found = {}
    for size, results in by_size.items():
        mine = ours_of(results)
        zstd = next((r for r in results if r.contender.kind == ZSTD and r.ok), None)
        if mine is not None and zstd is not None:
            found[size] = (mine, zstd)
    if not found:
        return "**With wal_compression = zstd**: not measured (the server refused the setting)."
    smallest = min(found)
    base = found[smallest][1].median_seconds / smallest
    rows = []
    for size, (mine, zstd) in found.items():
        ratios = paired_ratios(
            [m.seconds for m in zstd.measurements], [m.seconds for m in mine.measurements]
        )
        per_row = zstd.median_seconds / size
        rows.append(
            [
                f"{size:,}",
                Spread.of(ratios).text(),
                f"{per_row * 1e6:.3g} µs",
                format_ratio(per_row / base),
                " / ".join(
                    f"{w:,.0f} B" if w is not None else "-"
                    for w in (wal_per_row(zstd, size), wal_per_row(mine, size))
                ),
            ]
        )
    return (
        "**With the server's `wal_compression = zstd`** (off by default; ours in a session that"
        " sets it): its time ÷ ours' with the default, paired by round, median (min to max); its"
        " cost per row ÷ its own at the smallest size (issue 19's ±25 % goal is on the"
        " default)\n\n"
        + markdown_table(
            [
                "pending posts",
                "zstd ÷ default",
                "per row",
                "÷ smallest size",
                "WAL per row: zstd / default",
            ],
            rows,
        )
    )


def history_ratio(results):
    """(ours with the history ÷ ours without, seconds with, seconds without), or None."""
    with_history = ours_of(results)
    without = next((r for r in results if r.contender.kind == NO_HISTORY and r.ok), None)
    if with_history is None or without is None:
        return None
    return (
        ratio(with_history.median_seconds, without.median_seconds),
        with_history.median_seconds,
        without.median_seconds,
    )


def history_table(by_size):
    """What the per-day history costs the flush, against the goal of issue 11."""
    rows = []
    for size, results in by_size.items():
        found = history_ratio(results)
        if found is None:
            rows.append([f"{size:,}", "-", "-", "not measured", "-"])
            continue
        times_more, with_history, without = found
        verdict = "met" if times_more <= HISTORY_GOAL else "**missed**"
        rows.append(
            [
                f"{size:,}",
                format_seconds(with_history),
                format_seconds(without),
                f"**{format_ratio(times_more)}**",
                f"{verdict} (≤ {HISTORY_GOAL}×)",  # noqa: RUF001
            ]
        )
    return "**The history's cost** (medians; with ÷ without)\n\n" + markdown_table(
        ["pending posts", "with history", "without", "with ÷ without", "goal"], rows
    )


def scaling_table(by_size):
    """µs per row at each size: flat means linear cost, rising means worse than linear."""
    sizes = list(by_size)
    names = [r.name for r in next(iter(by_size.values()), [])]
    rows = []
    for name in names:
        cells = [name]
        for size in sizes:
            result = next(r for r in by_size[size] if r.name == name)
            if result.ok:
                cost = result.median_seconds / size * 1e6
                mark = " (extrap.)" if result.extrapolated_from else ""
                cells.append(f"{cost:.3g} µs{mark}")
            else:
                cells.append("failed")
        rows.append(cells)
    return "**Cost per row as the flush grows** (median time ÷ rows)\n\n" + markdown_table(
        ["contender"] + [f"{size:,} posts" for size in sizes], rows
    )
