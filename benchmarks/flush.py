"""Flush: N distinct pending posts applied to a table of >= 1M posts, ours against the others."""

import random

from . import fixtures, ours, profile
from .harness import (
    BASELINE,
    LIMIT,
    OURS,
    Contender,
    ContenderFailed,
    Measurement,
    format_rate,
    format_ratio,
    format_seconds,
    markdown_table,
    ours_of,
    ratio,
    run_interleaved,
    timed,
)
from .sqlraw import RawSqlScripts

RECORD_CHUNK = 500  # post ids per record_impressions call while loading Redis (untimed)
# Ours with the history switched off (impressions.ledger.WRITE_HISTORY): what the history costs.
NO_HISTORY = "ours, no history"
# The goal of issue 11: a flush with the history takes at most this many times one without.
HISTORY_GOAL = 1.5


def pending_workload(post_ids, size, seed):
    """`size` distinct posts spread over the whole table, with 1 or 2 pending impressions each."""
    if size > len(post_ids):
        raise SystemExit(f"--flush-sizes {size:,} is more than the {len(post_ids):,} posts")
    chosen = random.Random(seed + size).sample(post_ids, size)
    counts = {post_id: 1 + index % 2 for index, post_id in enumerate(chosen)}
    # In id order for everyone: ours sorts anyway, and sorted keys walk the index and the heap in
    # order, and the raw limit deserves that best case too.
    return dict(sorted(counts.items()))


def impressions_total():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(impressions), 0) FROM casusult_post")
        return int(cursor.fetchone()[0])


def verified(run, expected_total):
    """Wrap a run so its effect on the table is checked (untimed): a wrong total fails the row."""

    def checked():
        before = impressions_total()
        measurement = run()
        applied = impressions_total() - before
        expected = expected_total(measurement)
        if applied != expected:
            raise ContenderFailed(f"applied {applied:,} impressions, expected {expected:,}")
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

    def __init__(self, options, post_ids, size, redis_client):
        self.options = options
        self.redis = redis_client
        self.size = size
        self.pending = pending_workload(post_ids, size, options.seed)
        self.sql = RawSqlScripts(options.database_url, self.pending)

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
                    f"s:bench-{level}-{start}", ids[start : start + RECORD_CHUNK]
                )
                if result.lost:
                    raise ContenderFailed("loading Redis lost impressions (Redis timeouts)")

    def prepare_ours(self):
        fixtures.vacuum_posts()
        fixtures.vacuum_history()
        seconds, _ = timed(self.load_redis)
        print(f"    (loaded {self.size:,} pending posts into Redis in {seconds:.1f} s, untimed)")

    def run_ours(self):
        flush_pending = ours.flush_pending()
        seconds, _report = timed(flush_pending)
        return Measurement(seconds=seconds, units=self.size)

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

    def contenders(self, memo):
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
        return [
            Contender(
                "ours: flush_pending()",
                verified(self.run_ours, whole),
                OURS,
                self.prepare_ours,
                "Redis snapshot → batched UPDATE … FROM unnest + history upserts → ledger →"
                " commit → delete",
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
            Contender(
                "SQL alone: UPDATE … FROM unnest (psql)",
                verified(self.sql.run_unnest, whole),
                LIMIT,
                vacuum,
                "one statement, array literals parsed by the server, autocommit",
            ),
            Contender(
                "SQL alone: COPY + join UPDATE (psql)",
                verified(self.sql.run_copy, whole),
                LIMIT,
                vacuum,
                "COPY to a temp table, ANALYZE, one join UPDATE, COMMIT",
            ),
        ]


def run(options, post_ids, redis_client, log=print):
    """Every size's contenders interleaved; returns (markdown, {size: results})."""
    by_size, memo = {}, {}
    for size in options.flush_sizes:
        rounds = options.rounds if size < options.big_size else options.big_rounds
        log(f"flush: {size:,} pending posts, {rounds} round(s)")
        workload = FlushWorkload(options, post_ids, size, redis_client)
        try:
            by_size[size] = run_interleaved(workload.contenders(memo), rounds, log)
        finally:
            workload.sql.cleanup()
    text = render(options, by_size)
    if options.profile_size:
        text += "\n\n" + profile_ours(options, post_ids, redis_client, log)
    return text, by_size


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
    check = "" if applied == workload.total(workload.pending) else " (WRONG TOTAL)"
    return (
        profile.render(f"Profile of ours, flush of {size:,} posts{check}", stats)
        + "\n\n"
        + profile.render_statements(statements)
    )


def render(options, by_size):
    blocks = []
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
        blocks.append(
            f"**{size:,} pending posts** (median of {rounds} round(s))\n\n"
            + markdown_table(
                ["contender", "kind", "time", "rows/s", "time ÷ ours", "note"],
                rows,
            )
        )
    blocks.append(history_table(by_size))
    blocks.append(scaling_table(by_size))
    return "\n\n".join(blocks)


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
