"""The flush around a change of day (issue 19, item 3): the dashboard's seeded history (100,000
posts x 400 days, the last day open) becomes yesterday; the daily roll-up task moves that day's
100,000 rows and prunes the day that falls out of the kept 400, in a process of its own, while
the flushes of the new day's windows run one after another, from its first batch to its end;
each flush's time against the same flush with no roll-up running, in the same round: half of
those before the roll-up, half after it.

The seeded history is put back after each roll-up (untimed): the rolled day's rows back in the
open table, its week and month rows taken off, the pruned rows restored, then a CHECKPOINT, so
the flushes that follow do not pay for writing the put-back's pages.

Full-page images: the first write to a page after a checkpoint's start logs the whole page. A
flush right after one writes ~10 times its usual WAL and takes up to twice its usual time,
whatever the roll-up does. So each round starts with a CHECKPOINT (the next timed one is then
checkpoint_timeout away, longer than a round) and one untimed flush, and so does the part after
the put-back: the checkpoints a round still meets are those the roll-up's own WAL brings on,
which are its cost. Each flush's WAL is reported next to its time."""

import math
import multiprocessing
import random
import time
from datetime import timedelta

from . import bulkfill, dashboard, fixtures, ours
from .harness import ContenderFailed, Spread, format_seconds, markdown_table, median

FLUSHES_DURING = 60  # at most, one after another while the roll-up runs (it ends first)
# A round's flushes with no roll-up running, half before it, half after: as many as run during it
# (about 30 of each kind), so that the worst of each is the worst of as many.
USUAL_FLUSHES = 30
GOAL = 1.5  # no flush during the roll-up takes more than this many times its usual time
# The roll-up's WAL per row moved: this many rows, in batches of WAL_BATCH, right after a
# CHECKPOINT, with each of these wal_compression settings the server takes.
WAL_ROWS, WAL_BATCH = 5000, 1000
COMPRESSIONS = ("off", "lz4", "zstd")
SAVED = ("impressions_daily", "impressions_period", "impressions_site_daily")
# Read into the page cache before the rounds (untimed): the flushes' and the roll-up's tables.
WARMED = (
    "impressions_daily_open",
    "impressions_daily_leaders",
    "impressions_daily",
    "impressions_period",
    "impressions_site_daily",
    "impressions_rollup",
    "casusult_post",
)
PERIOD_OF = (
    "VALUES ('w', d.day - (extract(isodow FROM d.day)::int - 1)),"
    " ('m', d.day - (extract(day FROM d.day)::int - 1))"
)


def sql(statement, params=None):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.rowcount


def roll_up_in_child(today, queue, paused, parked):
    """In a forked process: the roll-up task's work, its report (or error) put on `queue`. While
    `paused` is set, it stops after its batch in flight (holding no lock) and sets `parked`."""
    from django.db import connections

    from impressions import rollup

    rest = rollup.rest

    def rest_or_stay(pace, seconds):
        rest(pace, seconds)
        while paused.is_set():
            parked.set()
            time.sleep(0.002)
        parked.clear()

    rollup.rest = rest_or_stay  # called after each batch, its transaction over
    try:
        started = time.perf_counter()
        report = rollup.roll_up(today=today)
        queue.put(("done", time.perf_counter() - started, report.rows_moved, report.rows_pruned))
    except Exception as error:
        queue.put(("failed", f"{type(error).__name__}: {error}"))
    finally:
        connections.close_all()


class Midnight:
    def __init__(self, options, redis_client, log):
        from impressions import stats

        self.options = options
        self.redis = redis_client
        self.log = log
        self.last_day, self.facts = dashboard.ensure_history(log=log)
        self.today = self.last_day + timedelta(days=1)
        self.original_today = stats.today
        stats.today = lambda: self.today  # the roll-up and the history's kept days follow it
        self.oldest = stats.oldest_kept_day()
        ids = fixtures.all_post_ids()[: dashboard.HISTORY_POSTS]
        rng = random.Random(options.seed)
        chosen = rng.sample(ids, options.midnight_posts)
        late = int(len(chosen) * options.midnight_late)
        self.late = {post_id: 1 for post_id in chosen[:late]}
        self.fresh = {post_id: 1 + n % 2 for n, post_id in enumerate(chosen[late:])}
        self.wal = []  # bytes of WAL each flush wrote, in order, since the last settle()
        self.recover()
        self.save_pruned()
        fixtures.warm_tables(WARMED)

    def recover(self):
        """Untimed: put back the history that a run stopped during its roll-up left half rolled
        up (with the pruned rows that run saved)."""
        from django.db import connection

        from impressions.models import HistoryRollup

        state = HistoryRollup.objects.filter(id=1).first()
        if state is None or not (
            state.rolling_day == self.last_day
            or (state.rolled_through is not None and state.rolled_through >= self.last_day)
        ):
            return
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT to_regclass('bench_saved_{SAVED[0]}')")
            if cursor.fetchone()[0] is None:
                raise ContenderFailed(
                    f"the history's {self.last_day} is rolled up and the rows to put back are"
                    " gone: drop the benchmark database to seed it again"
                )
        self.log(f"  putting back the history a stopped run left rolled up ({self.last_day})")
        self.put_back()

    def save_pruned(self):
        """Untimed: the rows the roll-up's prune deletes, kept to put back."""
        for table in SAVED:
            column = "start" if table == "impressions_period" else "day"
            sql(f"DROP TABLE IF EXISTS bench_saved_{table}")
            sql(
                f"CREATE UNLOGGED TABLE bench_saved_{table} AS SELECT * FROM {table}"
                f" WHERE {column} < %s",
                [self.oldest],
            )

    def fill(self):
        from impressions import keys

        self.redis.flushdb()
        for pending, day in ((self.fresh, self.today), (self.late, self.last_day)):
            counted = bulkfill.fill(self.redis, pending, keys.day_text(day))
            if counted != sum(pending.values()):
                raise ContenderFailed(f"the fill counted {counted:,} of {sum(pending.values()):,}")

    def flush(self):
        """One window: filled (untimed), the new day's rows of the last one deleted (untimed, so
        each flush inserts them), flushed; its seconds."""
        self.fill()
        for table in ("impressions_daily_open", "impressions_daily_leaders"):
            sql(f"DELETE FROM {table} WHERE day = %s", [self.today])
        # Untimed. This machine's PostgreSQL has no autovacuum: without these, every flush would
        # meet the dead rows of all the deletes before it (a site's flushes update today's rows
        # and delete none), and the flushes grew slower as a round went on, roll-up or not.
        sql("VACUUM impressions_daily_open, impressions_daily_leaders")
        wal = fixtures.wal_position()
        started = time.perf_counter()
        ours.flush_pending()()
        seconds = time.perf_counter() - started
        self.wal.append(fixtures.wal_position() - wal)
        return seconds

    def usual(self, count=USUAL_FLUSHES):
        return [self.flush() for _ in range(count)]

    def settle(self):
        """Untimed: a CHECKPOINT, then one flush, which writes the full-page images of the pages
        every flush writes (the same posts each time)."""
        fixtures.checkpoint()
        self.flush()
        self.wal.clear()

    def rollup_wal(self):
        """Untimed: {wal_compression: WAL bytes a row} of the roll-up moving WAL_ROWS rows of the
        ended day right after a CHECKPOINT, in this process's session; the history put back after
        each. A setting the server refuses (not a superuser, a build without it) is left out."""
        from impressions import rollup

        found = {}
        for setting in COMPRESSIONS:
            with fixtures.wal_compression(setting) as taken:
                if not taken:
                    continue
                fixtures.checkpoint()
                day = rollup.start_next_day(self.last_day)
                start = fixtures.wal_position()
                batches = range(WAL_ROWS // WAL_BATCH)
                moved = sum(rollup.move_batch(day, WAL_BATCH) for _ in batches)
                found[setting] = (fixtures.wal_position() - start) / max(moved, 1)
            self.put_back()
        return found

    def during_rollup(self):
        """{"during": flush seconds while the roll-up ran, "paused": flush seconds while it was
        paused between two of its batches (the two kinds alternate), "during_wal", "paused_wal":
        their WAL bytes, "checkpoints": checkpoints that ended meanwhile, "rollup": (roll-up
        seconds, rows moved, rows pruned)}."""
        from django.db import connections

        from impressions.models import HistoryRollup

        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        paused, parked = context.Event(), context.Event()
        checkpoints = checkpoints_done()
        connections.close_all()  # before the fork: the child opens a connection of its own
        child = context.Process(
            target=roll_up_in_child, args=(self.today, queue, paused, parked), daemon=True
        )
        child.start()
        deadline = time.monotonic() + 120
        while not HistoryRollup.objects.filter(rolling_day=self.last_day, rolling_moved__gt=0):
            if not child.is_alive() or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        times, held, times_wal, held_wal = [], [], [], []
        while child.is_alive() and len(times) + len(held) < FLUSHES_DURING:
            times.append(self.flush())
            times_wal.append(self.wal[-1])
            paused.set()
            while child.is_alive() and not parked.wait(0.05):
                pass
            if child.is_alive():
                held.append(self.flush())
                held_wal.append(self.wal[-1])
            paused.clear()
        child.join(600)
        outcome = queue.get(timeout=10)
        if outcome[0] != "done":
            raise ContenderFailed(f"the roll-up failed: {outcome[1]}")
        checkpoints = checkpoints_done() - checkpoints
        self.put_back()
        return {
            "during": times,
            "paused": held,
            "during_wal": times_wal,
            "paused_wal": held_wal,
            "checkpoints": checkpoints,
            "rollup": outcome[1:],
        }

    def put_back(self):
        """Untimed: the seeded history as it was (the rolled day open again, the pruned rows
        back), keeping what the flushes added to the day before."""
        from impressions import periods
        from impressions.models import OpenDayLeaders

        day = self.last_day
        sql(
            "UPDATE impressions_period AS p SET count = p.count - d.count FROM ("
            f" SELECT r.period, r.start, x.object_id, x.count FROM impressions_daily AS x,"
            f" LATERAL ({PERIOD_OF.replace('d.day', 'x.day')}) AS r(period, start)"
            " WHERE x.day = %s) AS d"
            " WHERE p.period = d.period AND p.start = d.start AND p.object_id = d.object_id",
            [day],
        )
        sql(
            "DELETE FROM impressions_period WHERE count = 0 AND ((period = 'w' AND start = %s)"
            " OR (period = 'm' AND start = %s))",
            [periods.week_of(day), periods.month_of(day)],
        )
        sql(
            "INSERT INTO impressions_daily_open AS h (object_id, day, count)"
            " SELECT object_id, day, count FROM impressions_daily WHERE day = %s"
            " ON CONFLICT (object_id, day) DO UPDATE SET count = h.count + EXCLUDED.count",
            [day],
        )
        sql("DELETE FROM impressions_daily WHERE day = %s", [day])
        sql("DELETE FROM impressions_daily_leaders WHERE day = %s", [day])
        sql(
            "INSERT INTO impressions_daily_leaders (day, object_id, count) SELECT day, object_id,"
            " count FROM impressions_daily_open WHERE day = %s ORDER BY count DESC, object_id"
            " LIMIT %s",
            [day, OpenDayLeaders.LEADERS],
        )
        sql(
            "UPDATE impressions_rollup SET rolled_through = %s, rolling_day = NULL,"
            " rolling_mark = NULL WHERE id = 1",
            [day - timedelta(days=1)],
        )
        for table in SAVED:
            sql(f"INSERT INTO {table} SELECT * FROM bench_saved_{table} ON CONFLICT DO NOTHING")
        tables = ("impressions_daily_open", "impressions_daily", "impressions_period")
        for table in (*tables, "impressions_daily_leaders"):
            sql(f"VACUUM {table}")
        sql("CHECKPOINT")  # the put-back's pages written now, not during the next flushes

    def close(self):
        from impressions import stats

        self.redis.flushdb()
        for table in ("impressions_daily_open", "impressions_daily_leaders"):
            sql(f"DELETE FROM {table} WHERE day = %s", [self.today])
        sql("DELETE FROM impressions_site_daily WHERE day = %s", [self.today])
        for table in SAVED:
            sql(f"DROP TABLE IF EXISTS bench_saved_{table}")
        stats.today = self.original_today


def checkpoints_done():
    """Checkpoints the server has ended so far, timed or requested (pg_stat_bgwriter)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")
        return cursor.fetchone()[0]


def run(options, redis_client, log=print):
    """(markdown, figures): per round, the usual flushes' times and those during the roll-up."""
    bench = Midnight(options, redis_client, log)
    log(
        f"midnight: {options.midnight_posts:,} posts a window ({options.midnight_late:.0%} of"
        f" yesterday), {bench.last_day} becomes yesterday, {options.rounds} round(s)"
    )
    rounds = []
    try:
        wal = bench.rollup_wal()
        log(
            "  the roll-up's WAL a row moved, by wal_compression: "
            + ", ".join(f"{setting} {kilobytes(b)}" for setting, b in wal.items())
        )
        for number in range(options.rounds):
            bench.settle()
            before = bench.usual(USUAL_FLUSHES // 2)
            usual_wal = list(bench.wal)
            found = bench.during_rollup()
            bench.settle()
            usual = before + bench.usual(USUAL_FLUSHES - USUAL_FLUSHES // 2)
            rounds.append({"usual": usual, "usual_wal": usual_wal + bench.wal, **found})
            during, held, rolled = found["during"], found["paused"], found["rollup"]
            log(
                f"  round {number + 1}: usual {', '.join(f'{s:.2f}' for s in usual)} s; during"
                f" the roll-up ({rolled[0]:.1f} s) {', '.join(f'{s:.2f}' for s in during)} s;"
                f" with it paused {', '.join(f'{s:.2f}' for s in held)} s;"
                f" worst ÷ usual {max(during, default=math.nan) / median(usual):.2f};"
                f" WAL a flush: usual {kilobytes(median(rounds[-1]['usual_wal']))}, during"
                f" {kilobytes(median(found['during_wal'] or [math.nan]))}"
                f" (most {kilobytes(max(found['during_wal'], default=math.nan))});"
                f" {found['checkpoints']} checkpoint(s) during the roll-up"
            )
    finally:
        bench.close()
    return render(options, bench, rounds, wal), rounds


def kilobytes(count):
    return "-" if math.isnan(count) else f"{count / 1024:,.0f} KB"


def tails(rounds):
    """Each round's slowest flush while the roll-up ran ÷ its slowest usual flush (the worst of
    as many flushes each, about)."""
    return [max(r["during"]) / max(r["usual"]) for r in rounds if r["during"] and r["usual"]]


def ratios(rounds):
    """Each flush during a roll-up ÷ the median of its round's usual flushes."""
    return [s / median(r["usual"]) for r in rounds for s in r["during"]]


def paired(rounds):
    """Each flush while the roll-up ran ÷ the next one, with the roll-up paused between two of its
    batches: the same state of the history, a second apart."""
    return [s / p for r in rounds for s, p in zip(r["during"], r["paused"], strict=False)]


def noise(rounds):
    """Each round's slowest usual flush ÷ their median: what the machine alone does to the worst."""
    return [max(r["usual"]) / median(r["usual"]) for r in rounds if r["usual"]]


def wal_text(wal):
    """The roll-up's WAL a row moved, by wal_compression, as a sentence."""
    if not wal:
        return ""
    off = wal.get("off")
    parts = [
        f"`{setting}` {kilobytes(b)}" + (f" ({b / off:.2f}×)" if off and setting != "off" else "")  # noqa: RUF001
        for setting, b in wal.items()
    ]
    return (
        f" The roll-up's WAL per row moved ({WAL_ROWS:,} rows right after a CHECKPOINT), by the"
        f" server's `wal_compression`: {', '.join(parts)} (the server's WAL meanwhile, other"
        " databases' included): mostly full-page images of the week and month rows and of the"
        " count indexes (since migration 0010 a day's rows go to the end of the daily table's"
        " key together; before, each row moved logged a leaf of that key whole); the checkpoints"
        " that WAL brings on make the flushes after them pay full-page images too."
    )


def render(options, bench, rounds, wal=None):
    from impressions import rollup
    from impressions.conf import conf

    table = []
    for number, r in enumerate(rounds, start=1):
        usual = median(r["usual"])
        worst = max(r["during"], default=float("nan"))
        during = Spread.of(r["during"])
        held = Spread.of(r["paused"])
        pairs = paired([r])
        table.append(
            [
                str(number),
                f"{format_seconds(usual)} ({format_seconds(min(r['usual']))} to"
                f" {format_seconds(max(r['usual']))})",
                f"{len(r['during'])}: {format_seconds(during.median)} ({format_seconds(during.low)}"
                f" to {format_seconds(during.high)})"
                if r["during"]
                else "none (the roll-up was done)",
                f"{len(r['paused'])}: {format_seconds(held.median)} ({format_seconds(held.low)}"
                f" to {format_seconds(held.high)})"
                if r["paused"]
                else "none",
                f"**{worst / usual:.2f}**" if r["during"] else "-",
                f"{worst / max(r['usual']):.2f}" if r["during"] else "-",
                f"{Spread.of(pairs).text()}" if pairs else "-",
                f"{max(r['usual']) / usual:.2f}",
                f"{kilobytes(median(r['usual_wal']))} / {kilobytes(median(r['during_wal']))} /"
                f" {kilobytes(r['during_wal'][r['during'].index(worst)])}; {r['checkpoints']}"
                if r["during"]
                else "-",
                f"{r['rollup'][0]:.1f} s: {r['rollup'][1]:,} rows moved, {r['rollup'][2]:,} pruned",
            ]
        )
    found = ratios(rounds)
    worst = max(found, default=float("nan"))
    verdict = "met" if found and worst <= GOAL else "**missed**"
    worst_by_round = [
        max(r["during"]) / median(r["usual"]) for r in rounds if r["during"] and r["usual"]
    ]
    pairs = paired(rounds)
    state = [median(r["paused"]) / median(r["usual"]) for r in rounds if r["paused"]]
    return (
        f"History: the dashboard's seed ({bench.facts['daily_rows']:,} daily rows, 100,000 posts x"
        f" 400 days, the last day open). Its last day {bench.last_day} becomes yesterday: the"
        " roll-up task (`impressions.rollup.roll_up`, in a process of its own, as a worker runs"
        f" it) moves its 100,000 open rows to the daily, week and month rows and prunes the day"
        f" before the kept 400, in batches of at most {rollup.BATCH_ROWS:,} rows aiming at"
        f" {conf.ROLLUP_BATCH_SECONDS} s each (`IMPRESSIONS_ROLLUP_BATCH_SECONDS`), resting"
        f" {conf.ROLLUP_PACE}× as long as each batch took (`IMPRESSIONS_ROLLUP_PACE`). A window: "  # noqa: RUF001
        f"{options.midnight_posts:,} of the seed's posts, {options.midnight_late:.0%} of them with"
        " counts of yesterday (views before midnight), the others of today, filled untimed;"
        f" each flush timed. Per round, {USUAL_FLUSHES // 2} flushes with no roll-up running, then flushes"
        " one after another from the roll-up's first batch to its end (at most"
        f" {FLUSHES_DURING}), then {USUAL_FLUSHES - USUAL_FLUSHES // 2} flushes with no roll-up"
        " running again; a flush's usual time is the median of its round's. Every other flush"
        " during the roll-up runs with the roll-up paused after its batch in flight (holding no"
        " lock): the same state of the history (the ended day partly moved, so some of the late"
        " counts go to the daily, week and month rows), a second apart, so running ÷ paused is"
        " what the roll-up running costs a flush, and paused ÷ usual what the day's state does."
        " The history is put back (untimed) after each roll-up. Each round, and its part after"
        " the put-back, starts with a CHECKPOINT and one untimed flush: a flush right after a"
        " checkpoint writes full-page images of the pages it touches first (about ten times its"
        " usual WAL) and takes up to twice its usual time, roll-up or not; the checkpoints left"
        " in a round are those the roll-up's own WAL brings on. Worst running ÷ worst usual"
        " compares the tails of as many flushes; usual's slowest ÷ usual is the noise of the"
        " machine alone.\n\n"
        + markdown_table(
            [
                "round",
                "usual flush: median (min to max)",
                "flushes while the roll-up runs: how many, median (min to max)",
                "flushes with the roll-up paused",
                "worst running ÷ usual",
                "worst running ÷ worst usual",
                "running ÷ paused, pairs: median (min to max)",
                "usual's slowest ÷ usual (noise)",
                "WAL a flush: usual / running / the worst's; checkpoints ended during the roll-up",
                "the roll-up",
            ],
            table,
        )
        + f"\n\nEvery flush during a roll-up ÷ its round's usual time: **{Spread.of(found).text()}**"
        f" (median, min to max); each round's worst ÷ usual {Spread.of(worst_by_round).text()};"
        f" the worst {worst:.2f}, goal ≤ {GOAL}: {verdict}. Running ÷ paused, every pair:"
        f" {Spread.of(pairs).text()}, the worst {max(pairs, default=math.nan):.2f}; paused ÷ usual"
        f" (medians by round): {Spread.of(state).text()}. Each round's worst while the roll-up"
        f" runs ÷ its worst usual flush: {Spread.of(tails(rounds)).text()}." + wal_text(wal or {})
    )
