"""The daily roll-up, a task of its own: batched, resumable after a crash at any point, exact while
flushes add to the day it moves, reads agreeing before, during and after, and only the flushes of
that day waiting for it."""

import threading
from collections import Counter
from datetime import datetime, time, timedelta
from time import monotonic

import pytest
from django.core.management import call_command
from django.db import connections
from django.db.models import F
from django.tasks import default_task_backend
from django.test import override_settings
from django.utils import timezone

import impressions
from casusult.models import Post
from impressions import history_writer, periods, ranking, rollup, stats
from impressions.flush import flush_pending
from impressions.history_writer import LOCK_CLASS
from impressions.models import (
    DailyImpressions,
    HistoryRollup,
    OpenDailyImpressions,
    OpenDayLeaders,
    SiteDailyImpressions,
)
from impressions.recorder import record_impressions
from impressions.tasks import flush_impressions_task, rollup_impressions_task, rollup_needed
from tests.database import other_connection, transaction_in_a_thread
from tests.factories import make_posts

from .history_check import daily_counts, history_sums, rollup_mismatches
from .support import DUMMY_TASKS, SQLITE_FIVE_POSTS, killed_in_a_child

pytestmark = pytest.mark.django_db(transaction=True)

YESTERDAY_NOON = 12


def moment(days_ago, hour=YESTERDAY_NOON):
    day = stats.today() - timedelta(days=days_ago)
    return timezone.make_aware(datetime.combine(day, time(hour)), timezone.get_default_timezone())


def totals(ids):
    return dict(Post.objects.filter(id__in=ids).values_list("id", "impressions"))


def state():
    return HistoryRollup.objects.get(id=1)


def viewed(posts, days_ago, viewers=3):
    """Each post viewed by 1..viewers viewers `days_ago` days ago, flushed: open rows."""
    for rank, post in enumerate(posts):
        for viewer in range(1 + rank % viewers):
            record_impressions(f"u:{days_ago}-{viewer}", [post.id], now=moment(days_ago))
    flush_pending()


def reads(day):
    return [
        stats.top_in(periods.DAY, day),
        stats.top_in(periods.WEEK, day),
        stats.top_in(periods.MONTH, day),
        impressions.top_posts(day - timedelta(days=9), day + timedelta(days=1)),
        ranking.ranked_page(day - timedelta(days=9), day + timedelta(days=1), 1),
        list(ranking.iter_ranked(day - timedelta(days=9), day + timedelta(days=1))),
        stats.daily_totals(day, day),
    ]


class Stop(Exception):
    pass


def stopped_at_call(name, call, run):
    """Run `run()` with rollup.<name> raising Stop at its `call`-th call (a roll-up stopped
    there); returns what the calls before it returned."""
    original, returned = getattr(rollup, name), []

    def stopping(*args):
        if len(returned) == call - 1:
            raise Stop
        returned.append(original(*args))
        return returned[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rollup, name, stopping)
        with pytest.raises(Stop):
            run()
    return returned


def test_a_roll_up_stopped_between_batches_goes_on_from_its_mark(standalone_buffer, monkeypatch):
    posts = make_posts(25)
    ids = [p.id for p in posts]
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        viewed(posts, 1)
        yesterday = stats.today() - timedelta(days=1)
        before = reads(yesterday)
        stopped_at_call("move_batch", 3, lambda: rollup.roll_up(batch_size=4, pace=0))
        half = state()
        assert (half.rolling_day, half.rolling_moved, half.rolling_rows) == (yesterday, 8, 25)
        assert DailyImpressions.objects.count() == 8 and OpenDailyImpressions.objects.count() == 17
        assert rollup_mismatches() == []  # the moved rows are in the week and month rows, once
        assert reads(yesterday) == before  # every read agrees half-way

        report = rollup.roll_up(batch_size=4, pace=0)
        assert (report.days, report.rows_moved) == ([yesterday], 17)
        done = state()
        assert (done.rolled_through, done.rolling_day, done.rolling_mark) == (yesterday, None, None)
        assert not OpenDailyImpressions.objects.exists()
        assert rollup_mismatches() == []
        assert history_sums(ids) == totals(ids)
        assert reads(yesterday) == before
        assert rollup.roll_up(pace=0).rows_moved == 0  # nothing twice


def rolling_yesterday_with_late_counts(posts):
    """Yesterday's views of `posts` flushed, its roll-up started (the 5 smallest ids moved),
    then a late view of each post recorded (not flushed); returns yesterday."""
    viewed(posts, 1)
    yesterday = stats.today() - timedelta(days=1)
    day = rollup.start_next_day(yesterday)
    assert day == yesterday
    assert rollup.move_batch(day, 5) == 5
    for post in posts:
        record_impressions("late", [post.id], now=moment(1, hour=23))
    return yesterday


def test_flushes_of_the_day_being_rolled_up_land_on_both_sides_of_its_mark(standalone_buffer):
    posts = make_posts(12)
    ids = [p.id for p in posts]
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        # Late counts of yesterday for every post: moved ones go to their daily and rollup rows,
        # the others to their open rows.
        yesterday = rolling_yesterday_with_late_counts(posts)
        record_impressions("today", ids, now=moment(0))
        flush_pending(batch_size=3)
        assert rollup_mismatches() == []
        assert history_sums(ids) == totals(ids)
        moved = set(DailyImpressions.objects.values_list("object_id", flat=True))
        assert moved == set(sorted(ids)[:5])
        rollup.roll_up(pace=0)
        assert rollup_mismatches() == []
        assert history_sums(ids) == totals(ids)
        assert OpenDailyImpressions.objects.filter(day=yesterday).count() == 0
        assert stats.top_in(periods.DAY, yesterday)[0][1] == 4  # 3 viewers, then the late one


def test_batches_of_late_counts_alone_still_go_where_the_roll_up_says(standalone_buffer):
    """Batches of one day only (their day known without reading them: no late counts unless
    the roll-up has reached it): the day being rolled up, then a day rolled up already."""
    posts = make_posts(12)
    ids = [p.id for p in posts]
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        yesterday = rolling_yesterday_with_late_counts(posts)
        flush_pending(batch_size=3)
        assert rollup_mismatches() == []
        assert history_sums(ids) == totals(ids)
        moved = set(DailyImpressions.objects.values_list("object_id", flat=True))
        assert moved == set(sorted(ids)[:5])
        assert OpenDailyImpressions.objects.filter(day=yesterday).count() == 7
        rollup.roll_up(pace=0)
        assert state().rolled_through == yesterday
        for post in posts:
            record_impressions("later", [post.id], now=moment(1, hour=22))
        flush_pending(batch_size=3)
        assert rollup_mismatches() == []
        assert history_sums(ids) == totals(ids)
        assert OpenDailyImpressions.objects.filter(day=yesterday).count() == 0
        assert stats.top_in(periods.DAY, yesterday)[0][1] == 5  # 3 viewers, late, later


def waiting_on_advisory_locks():
    with other_connection() as admin:
        return admin.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            # pg_locks lists every database's: another test database's (a pytest-xdist
            # worker's) are not this test's.
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid = %s",
            [LOCK_CLASS],
        ).fetchone()[0]


def test_a_roll_up_batch_holds_back_only_the_flushes_of_its_day(standalone_buffer):
    """While a roll-up step holds yesterday's lock, a flush of today's counts goes through and one
    of yesterday's waits for it: a flush never waits for the roll-up of a day it does not write."""
    posts = make_posts(3)
    ids = [p.id for p in posts]
    yesterday = stats.today() - timedelta(days=1)
    with other_connection() as roller, roller.transaction():
        roller.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_CLASS, yesterday.toordinal()])
        record_impressions("u:today", ids)
        assert flush_pending().impressions_applied == 3

        record_impressions("u:late", ids, now=moment(1))
        outcome = {}

        def late_flush():
            try:
                outcome["report"] = flush_pending()
            finally:
                connections.close_all()

        flusher = threading.Thread(target=late_flush)
        flusher.start()
        while not waiting_on_advisory_locks():
            assert flusher.is_alive(), outcome
            flusher.join(0.05)
        assert "report" not in outcome
    flusher.join(60)
    assert outcome["report"].impressions_applied == 3
    assert set(totals(ids).values()) == {2}


@pytest.mark.parametrize(
    ("budget", "sizes"),
    [
        # Batches far over a tiny budget shrink to the fewest rows; far under a long one, they
        # double up to the most (BATCH_ROWS); 0 keeps them at the most.
        (1e-9, [8] + [2] * 22),
        (3600, [8, 16, 20, 20]),
        (0, [20, 20, 20]),
    ],
)
def test_the_roll_up_s_batches_follow_its_time_budget_moving_every_row_once(
    standalone_buffer, monkeypatch, budget, sizes
):
    posts = make_posts(50)
    ids = [p.id for p in posts]
    monkeypatch.setattr(rollup, "FIRST_ROWS", 8)
    monkeypatch.setattr(rollup, "MIN_ROWS", 2)
    monkeypatch.setattr(rollup, "BATCH_ROWS", 20)
    asked = []
    original = rollup.move_batch

    def move_batch(day, batch_size):
        asked.append(batch_size)
        return original(day, batch_size)

    monkeypatch.setattr(rollup, "move_batch", move_batch)
    with override_settings(
        IMPRESSIONS_HISTORY_DAYS=0,
        IMPRESSIONS_ROLLUP_BATCH_SECONDS=budget,
        IMPRESSIONS_ROLLUP_PACE=0,
    ):
        viewed(posts, 1)
        yesterday = stats.today() - timedelta(days=1)
        before = reads(yesterday)
        report = rollup.roll_up()
    assert asked == sizes
    assert (report.days, report.rows_moved) == ([yesterday], 50)
    assert not OpenDailyImpressions.objects.exists()
    assert rollup_mismatches() == []
    assert history_sums(ids) == totals(ids)
    assert reads(yesterday) == before


def test_the_roll_up_waits_for_the_flush_batches_of_its_day_without_queueing_ahead(
    standalone_buffer,
):
    """A flush batch holds yesterday (its shared lock): the roll-up waits for it by trying the
    lock, never in the lock's queue, where every flush batch after it would wait behind it."""
    yesterday = stats.today() - timedelta(days=1)
    outcome = {}

    def roller():
        try:
            outcome["free"] = rollup.wait_for_flushes(yesterday, patience=30)
        finally:
            connections.close_all()

    with other_connection() as flusher:
        with flusher.transaction():
            flusher.execute(
                "SELECT pg_advisory_xact_lock_shared(%s, %s)", [LOCK_CLASS, yesterday.toordinal()]
            )
            waiting = threading.Thread(target=roller)
            waiting.start()
            for _ in range(10):
                waiting.join(0.05)
                assert waiting.is_alive() and waiting_on_advisory_locks() == 0
            # Another flush batch of the day still gets its lock at once.
            with other_connection() as second, second.transaction():
                second.execute(
                    "SELECT pg_advisory_xact_lock_shared(%s, %s)",
                    [LOCK_CLASS, yesterday.toordinal()],
                )
        waiting.join(30)
    assert outcome == {"free": True}
    with other_connection() as flusher, flusher.transaction():
        flusher.execute(
            "SELECT pg_advisory_xact_lock_shared(%s, %s)", [LOCK_CLASS, yesterday.toordinal()]
        )
        assert rollup.wait_for_flushes(yesterday, patience=0.1) is False  # then it queues


def test_the_roll_up_starts_no_batch_while_a_flush_runs(standalone_buffer, monkeypatch):
    """A flush says it runs for its whole run, between its transactions too (here: paused after
    its Redis read, no transaction open): the roll-up's next batch waits for its end, and goes
    ahead once its patience runs out. A flush that has ended or failed holds nothing."""
    from impressions import flush as flush_module

    posts = make_posts(3)
    record_impressions("u:1", [p.id for p in posts])
    yesterday = stats.today() - timedelta(days=1)
    paused, resume = threading.Event(), threading.Event()
    outcome = {}

    def pause(name):
        if name == "before-apply":
            paused.set()
            resume.wait(30)

    def flusher():
        try:
            outcome["applied"] = flush_pending().impressions_applied
        finally:
            connections.close_all()

    def roller():
        try:
            outcome["free"] = rollup.wait_for_flushes(yesterday, patience=30)
            # The flush's counts committed by then (its thread may not have returned yet).
            counts = Post.objects.filter(id__in=[p.id for p in posts]).values_list(
                "impressions", flat=True
            )
            outcome["flushed by then"] = sum(counts) == 3
        finally:
            connections.close_all()

    monkeypatch.setattr(flush_module, "checkpoint", pause)
    flushing = threading.Thread(target=flusher)
    flushing.start()
    assert paused.wait(30)
    started = monotonic()
    assert rollup.wait_for_flushes(yesterday, patience=0.2) is False
    assert monotonic() - started >= 0.2
    waiting = threading.Thread(target=roller)
    waiting.start()
    waiting.join(0.3)
    assert waiting.is_alive()
    resume.set()
    flushing.join(30)
    waiting.join(30)
    assert outcome == {"applied": 3, "free": True, "flushed by then": True}
    assert rollup.wait_for_flushes(yesterday, patience=0) is True

    monkeypatch.setattr(flush_module, "checkpoint", failing_at("after-snapshot"))
    with pytest.raises(RuntimeError):
        flush_pending()
    assert rollup.wait_for_flushes(yesterday, patience=0) is True


def failing_at(point):
    def fail(name):
        if name == point:
            raise RuntimeError(f"stopped at {name}")

    return fail


def test_a_roll_up_step_and_a_flush_batch_taking_the_roll_up_s_row_at_once_do_not_deadlock():
    """On MySQL/MariaDB, each roll-up step's INSERT IGNORE of the roll-up's row (there already)
    left a shared lock on it, which its SELECT … FOR UPDATE then upgraded: a flush batch waiting
    for that row in between (the portable path locks it) made InnoDB find a deadlock (1213) and
    fail one of the two."""
    HistoryRollup.objects.get_or_create(id=1)  # as the migrations leave it (not Django's flush)
    first_done, go_on = threading.Event(), threading.Event()
    errors = []

    def pause_after_the_first_on_the_row(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if "impressions_rollup" in sql and not first_done.is_set():
            first_done.set()
            go_on.wait(10)
        return result

    roller = transaction_in_a_thread(rollup.locked_state, errors, pause_after_the_first_on_the_row)
    assert first_done.wait(10)
    flusher = transaction_in_a_thread(
        lambda: HistoryRollup.objects.select_for_update().get(id=1), errors
    )
    flusher.join(0.5)  # now waiting for the roll-up's row
    go_on.set()
    for thread in (roller, flusher):
        thread.join(30)
    assert errors == []


def test_the_roll_up_is_scheduled_once_a_day_has_ended(standalone_buffer, settings):
    posts = make_posts(2)
    settings.TASKS = DUMMY_TASKS
    record_impressions("u:1", [p.id for p in posts])
    flush_pending()
    assert not rollup_needed()
    record_impressions("u:2", [p.id for p in posts], now=moment(1))
    flush_impressions_task.call()  # its counts of yesterday open the ended day
    assert rollup_needed()
    flush_impressions_task.call()  # scheduled once
    rollups = [r for r in default_task_backend.results if r.task.name == "rollup_impressions_task"]
    assert len(rollups) == 1
    rollup_impressions_task.call()
    assert not rollup_needed()
    assert state().rolled_through == stats.today() - timedelta(days=1)


def test_the_dashboard_shows_the_roll_up_s_progress(standalone_buffer, staff_client):
    posts = make_posts(6)
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        viewed(posts, 1)
        yesterday = stats.today() - timedelta(days=1)
        rollup.start_next_day(yesterday)
        rollup.move_batch(yesterday, 2)
        with history_writer.rollup_running():  # a roll-up at it
            page = staff_client.get("/admin/impressions/dashboard/").content.decode()
        assert f"rolling up {yesterday:%Y-%m-%d}: 2 of 6 rows moved" in page
        # The roll-up of another database of the server (another site, staging) is not this one's.
        with other_connection("postgres") as elsewhere:
            elsewhere.execute(
                "SELECT pg_advisory_lock_shared(%s, %s)", [LOCK_CLASS, history_writer.ROLLUP_LOCK]
            )
            page = staff_client.get("/admin/impressions/dashboard/").content.decode()
        assert f"{yesterday:%Y-%m-%d} stopped at 2 of 6 rows moved" in page
        rollup.roll_up(pace=0)
        page = staff_client.get("/admin/impressions/dashboard/").content.decode()
        assert f"days rolled up through {yesterday:%Y-%m-%d}, the last at" in page


def dashboard_rollup(staff_client):
    page = staff_client.get("/admin/impressions/dashboard/").content.decode()
    return " ".join(page.split('id="rollup">', 1)[1].split("</dd>", 1)[0].split())


@pytest.mark.parametrize("point", ["move_batch_postgresql", "rest", "delete_batches"])
def test_a_roll_up_killed_anywhere_is_finished_by_the_next_and_the_dashboard_says_it_stopped(
    standalone_buffer, staff_client, point
):
    """A roll-up process SIGKILLed in a batch, between two, or in the prune: the next roll-up
    (scheduled by a flush: it is still needed) goes on from its mark, and meanwhile the
    dashboard says that none runs. Before, it said "rolling up" for as long as none did."""
    posts = make_posts(6)
    ids = [p.id for p in posts]
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        viewed(posts, 40)  # older than the history kept below: moved, then pruned
        viewed(posts, 1)
    old_day, yesterday = (stats.today() - timedelta(days=n) for n in (40, 1))
    with override_settings(IMPRESSIONS_HISTORY_DAYS=30):
        killed_in_a_child(rollup, point, lambda: rollup.roll_up(batch_size=2, pace=0))
        deadline = monotonic() + 5
        while history_writer.rollup_is_running():  # the server ends the dead one's session
            assert monotonic() < deadline, "the killed roll-up's lock is still held"
        if point == "delete_batches":
            assert (state().rolling_day, state().rolled_through) == (None, yesterday)
        else:
            moved = 2 if point == "rest" else 0
            assert dashboard_rollup(staff_client) == (
                f"rolling up {old_day:%Y-%m-%d} stopped at {moved} of 6 rows moved: no roll-up"
                " is running; the next one goes on from there"
            )
        assert rollup_needed()
        rollup.roll_up(batch_size=2, pace=0)
        assert not rollup_needed()
    done = state()
    assert (done.rolled_through, done.rolling_day) == (yesterday, None)
    assert daily_counts(ids) == {(p.id, yesterday): 1 + rank % 3 for rank, p in enumerate(posts)}
    assert rollup_mismatches() == []


def flushed_around_the_locks(day, counts):
    """What a flush that ignored the roll-up's mark wrote (an old build's keys in a rolling
    deploy; a restored backup or a manual INSERT leave the same): open rows of `day` for objects
    the roll-up has already moved, with their totals and the site row, and the day's leaders
    upserted from the open rows, as a flush does, so with that row's part of the count only."""
    for object_id, count in counts.items():
        OpenDailyImpressions.objects.create(object_id=object_id, day=day, count=count)
        Post.objects.filter(id=object_id).update(impressions=F("impressions") + count)
        OpenDayLeaders.objects.update_or_create(
            day=day, object_id=object_id, defaults={"count": count}
        )
    SiteDailyImpressions.objects.filter(day=day).update(count=F("count") + sum(counts.values()))


def rows_below_the_mark(posts, moved, late):
    """`posts` posts viewed yesterday, flushed; its roll-up started, `moved` rows moved, then
    open rows below the mark written around the locks ({rank in id order: count}); returns the
    ids (sorted) and yesterday."""
    made = make_posts(posts)
    ids = sorted(p.id for p in made)
    viewed(made, 1)
    yesterday = stats.today() - timedelta(days=1)
    rollup.start_next_day(yesterday)
    assert rollup.move_batch(yesterday, moved) == moved
    flushed_around_the_locks(yesterday, {ids[rank]: count for rank, count in late.items()})
    return ids, yesterday


def day_top(day, limit):
    """The exact top of `day`: each object's daily and open rows of the day, summed."""
    sums = Counter()
    for model in (DailyImpressions, OpenDailyImpressions):
        sums.update(dict(model.objects.filter(day=day).values_list("object_id", "count")))
    return sorted(sums.items(), key=lambda row: (-row[1], row[0]))[:limit]


@pytest.mark.parametrize("rows_per_batch", [2, 100])
def test_open_rows_below_the_mark_are_folded_into_the_daily_rows_not_looped_on(
    standalone_buffer, staff_client, monkeypatch, caplog, rows_per_batch
):
    """Open rows of the day being rolled up, of objects the roll-up has moved already: before,
    each batch moved none (they lie below the mark) and the day never finished, the roll-up
    looping for ever. They are folded into the daily, week and month rows once, every sum
    agreeing before, during and after, the day's leaders made whole, and a warning names the
    day."""
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        ids, yesterday = rows_below_the_mark(12, moved=5, late={0: 7, 3: 1})
        before = reads(yesterday)
        exact = day_top(yesterday, len(before[0]))
        assert exact[0] == (ids[0], 8)  # 1 viewer, then the 7 written around the locks
        assert before[0][0] == (ids[0], 7)  # the day's leaders: the open row's part
        original = rollup.move_batch
        during, progress = [], []

        def bounded(day, batch_size):
            if len(during) > 20:
                raise Stop("the roll-up loops on its day")
            moved = original(day, batch_size)
            during.append(reads(yesterday))
            progress.append(dashboard_rollup(staff_client))
            return moved

        monkeypatch.setattr(rollup, "move_batch", bounded)
        call_command("rollup_impressions", "--batch-size", str(rows_per_batch), verbosity=0)
        monkeypatch.undo()
        # Every sum reads the same throughout; the day's leaders have the whole count once
        # the rows are folded (the last batch), and the daily rows after.
        assert all(read[1:] == before[1:] for read in during)
        assert during[-1][0] == exact
        # The dashboard's progress counts the folded rows: it ends at all of them moved.
        assert progress[-1] == f"rolling up {yesterday:%Y-%m-%d}: 14 of 14 rows moved"
        assert dashboard_rollup(staff_client).startswith(
            f"days rolled up through {yesterday:%Y-%m-%d}, the last at"
        )
        done = state()
        assert (done.rolled_through, done.rolling_day) == (yesterday, None)
        assert done.rolling_moved == done.rolling_rows == 12 + 2
        assert not OpenDailyImpressions.objects.exists()
        assert rollup_mismatches() == []
        assert history_sums(ids) == totals(ids)
        assert reads(yesterday) == [exact, *before[1:]]
        warned = [r for r in caplog.records if hasattr(r, "rollup_late_rows")]
        assert all(f"roll-up of {yesterday:%Y-%m-%d}: open rows" in r.message for r in warned)
        assert sum(r.rollup_late_rows["rows"] for r in warned) == 2


# The same on SQLite (the portable path), in a child process on a fresh file: a roll-up stopped
# after a batch, an open row of a moved object written around the locks, then the roll-up again.
LATE_ROWS_ON_SQLITE = (
    SQLITE_FIVE_POSTS
    + """
from datetime import datetime, time, timedelta

from django.db.models import F
from django.test import override_settings
from django.utils import timezone

from impressions import rollup, stats
from impressions.flush import flush_pending
from impressions.models import HistoryRollup, OpenDailyImpressions, SiteDailyImpressions
from impressions.recorder import record_impressions
from tests.impressions.history_check import history_sums, rollup_mismatches

with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
    yesterday = stats.today() - timedelta(days=1)
    noon = timezone.make_aware(datetime.combine(yesterday, time(12)))
    record_impressions("u:1", ids, now=noon)
    flush_pending()
    rollup.start_next_day(yesterday)
    rollup.move_batch(yesterday, 2)
    OpenDailyImpressions.objects.create(object_id=ids[0], day=yesterday, count=7)
    Post.objects.filter(id=ids[0]).update(impressions=F("impressions") + 7)
    SiteDailyImpressions.objects.filter(day=yesterday).update(count=F("count") + 7)
    original, calls = rollup.move_batch, []

    def bounded(day, batch_size):
        calls.append(day)
        assert len(calls) < 20, "the roll-up loops on its day"
        return original(day, batch_size)

    rollup.move_batch = bounded
    rollup.roll_up(batch_size=2, pace=0)
    state = HistoryRollup.objects.get(id=1)
    print(json.dumps({
        "rolled_through": str(state.rolled_through),
        "yesterday": str(yesterday),
        "open_rows": OpenDailyImpressions.objects.count(),
        "sums": history_sums(ids) == dict(Post.objects.values_list("id", "impressions")),
        "mismatches": [str(m) for m in rollup_mismatches()],
    }))
"""
)


def test_open_rows_below_the_mark_are_folded_on_sqlite(on_sqlite):
    out = on_sqlite(LATE_ROWS_ON_SQLITE)
    assert out["rolled_through"] == out["yesterday"]
    assert (out["open_rows"], out["sums"], out["mismatches"]) == (0, True, [])


# A Wednesday past the month's first days: its week and month hold days rolled up before it.
WEDNESDAY = datetime(2026, 11, 18).date()
# A day of the month and the week before: rolled up long ago.
OLD_DAY = datetime(2026, 10, 28).date()


def reads_of_today(today):
    """What the dashboard reads of today's week and month, and of the range ending today."""
    return [
        stats.top_in(periods.DAY, today - timedelta(days=1)),
        stats.top_in(periods.WEEK, today),
        stats.top_in(periods.MONTH, today),
        impressions.top_posts(today - timedelta(days=9), today),
        ranking.ranked_page(today - timedelta(days=9), today, 1),
        list(ranking.iter_ranked(today - timedelta(days=9), today)),
    ]


def test_open_rows_of_a_day_rolled_up_long_ago_go_to_its_rows_never_lowering_the_mark(
    standalone_buffer, staff_client, monkeypatch
):
    """Open rows of a day rolled up long ago (a restored backup, an old build's flush): the
    roll-up takes that day again. Before, its finish set rolled_through to that old day, lowering
    it until the next day's start: the week and month of today were read without their rollup
    rows (the days between missed, or read from the leaders those days no longer have), and the
    dashboard said the days were rolled up through the old day. While it moved that day, the
    week and month rows of later days were left out too. Now the mark never goes down, every read
    of the later days stays the same throughout, and the old day's rows count once, in its daily,
    week and month rows."""
    monkeypatch.setattr(stats, "today", lambda: WEDNESDAY)
    posts = make_posts(6)
    ids = sorted(p.id for p in posts)
    yesterday = WEDNESDAY - timedelta(days=1)
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        for day in (OLD_DAY, WEDNESDAY - timedelta(days=2), yesterday, WEDNESDAY):
            viewed(posts, (WEDNESDAY - day).days)
        rollup.roll_up(batch_size=2, pace=0)
        assert state().rolled_through == yesterday
        before = reads_of_today(WEDNESDAY)
        old_top = stats.top_in(periods.DAY, OLD_DAY)
        # Open rows of the old day, as a restored backup leaves them (totals and site row too).
        late = {ids[0]: 7, ids[2]: 1, ids[4]: 2}
        for object_id, count in late.items():
            OpenDailyImpressions.objects.create(object_id=object_id, day=OLD_DAY, count=count)
            Post.objects.filter(id=object_id).update(impressions=F("impressions") + count)
        SiteDailyImpressions.objects.filter(day=OLD_DAY).update(count=F("count") + 10)

        # Stopped after the old day's first batch.
        stopped_at_call("move_batch", 2, lambda: rollup.roll_up(batch_size=2, pace=0))
        half = state()
        assert (half.rolling_day, half.rolled_through, half.rolling_moved) == (
            OLD_DAY,
            yesterday,
            2,
        )
        assert reads_of_today(WEDNESDAY) == before

        # Stopped after the old day's finish, before the next start.
        starts = stopped_at_call("start_next_day", 2, lambda: rollup.roll_up(batch_size=2, pace=0))
        assert starts == [OLD_DAY]
        window = state()
        assert (window.rolling_day, window.rolled_through) == (None, yesterday)
        assert rollup.status()["rolled_through"] == yesterday
        assert reads_of_today(WEDNESDAY) == before
        assert rollup_mismatches() == []

        rollup.roll_up(batch_size=2, pace=0)
        assert state().rolled_through == yesterday
        assert not OpenDailyImpressions.objects.filter(day__lt=WEDNESDAY).exists()
        assert reads_of_today(WEDNESDAY) == before
        assert rollup_mismatches() == []
        assert history_sums(ids) == totals(ids)
        # The old day's rows count once, in its top and in its week and month.
        expected = Counter(dict(old_top))
        expected.update(late)
        assert stats.top_in(periods.DAY, OLD_DAY) == sorted(
            expected.items(), key=lambda row: (-row[1], row[0])
        )
        for period in (periods.WEEK, periods.MONTH):
            assert dict(stats.top_in(period, OLD_DAY)) == dict(expected)


def test_a_deep_top_of_the_day_being_rolled_up_sums_each_object_once(
    standalone_buffer, monkeypatch
):
    """Past its leaders, the top of a day not rolled up is read from its rows: before, the open
    and the daily rows of the day were listed side by side, so an object with both (an open row
    below the mark, until the roll-up folds it) came twice, each with part of its count."""
    monkeypatch.setattr(OpenDayLeaders, "LEADERS", 3)  # the deep read from the 4th row on
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        ids, yesterday = rows_below_the_mark(8, moved=4, late={0: 7, 1: 1})
        exact = day_top(yesterday, 10)
        assert exact[0] == (ids[0], 8)
        assert stats.top_in(periods.DAY, yesterday, 10) == exact
        assert stats.open_day_top(yesterday, 10) == exact
        ranked, _, objects = ranking.ranked_page(yesterday, yesterday, 1)
        assert ([(object_id, count) for _, object_id, count in ranked], objects) == (exact, 8)
        assert stats.history([ids[0]], yesterday, yesterday) == {ids[0]: {yesterday: 8}}


# The same two on SQLite (the portable path), in a child process on a fresh file: open rows of a
# day rolled up long ago, the roll-up stopped after that day's finish; then the deep top of the
# day being rolled up, with an open row below the mark.
OLD_DAY_AND_DEEP_TOP_ON_SQLITE = (
    SQLITE_FIVE_POSTS
    + """
from collections import Counter
from datetime import datetime, time, timedelta

from django.test import override_settings
from django.utils import timezone

from impressions import periods, rollup, stats
from impressions.flush import flush_pending
from impressions.models import DailyImpressions, HistoryRollup, OpenDailyImpressions, OpenDayLeaders
from impressions.recorder import record_impressions


def viewed(day):
    for rank, object_id in enumerate(ids):
        for viewer in range(1 + rank % 3):
            noon = timezone.make_aware(datetime.combine(day, time(12)))
            record_impressions(f"u:{day}-{viewer}", [object_id], now=noon)
    flush_pending()


class Stop(Exception):
    pass


with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
    today = stats.today()
    old_day, two_days_ago, yesterday = (today - timedelta(days=n) for n in (40, 2, 1))
    viewed(old_day)
    viewed(two_days_ago)
    rollup.roll_up(today=yesterday, pace=0)
    OpenDailyImpressions.objects.create(object_id=ids[0], day=old_day, count=7)
    original_start, starts = rollup.start_next_day, []

    def stop_at_the_second_start(through):
        if starts:
            raise Stop
        starts.append(original_start(through))
        return starts[-1]

    rollup.start_next_day = stop_at_the_second_start
    try:
        rollup.roll_up(today=yesterday, pace=0)
    except Stop:
        pass
    rollup.start_next_day = original_start
    window = HistoryRollup.objects.get(id=1).rolled_through

    viewed(yesterday)
    rollup.start_next_day(yesterday)
    rollup.move_batch(yesterday, 2)
    OpenDailyImpressions.objects.create(object_id=ids[0], day=yesterday, count=7)
    exact = Counter()
    for model in (DailyImpressions, OpenDailyImpressions):
        exact.update(dict(model.objects.filter(day=yesterday).values_list("object_id", "count")))
    OpenDayLeaders.LEADERS = 2  # the deep read from the 3rd row on
    deep = stats.top_in(periods.DAY, yesterday, 10)
    print(json.dumps({
        "window": str(window),
        "two_days_ago": str(two_days_ago),
        "old_day": DailyImpressions.objects.get(object_id=ids[0], day=old_day).count,
        "deep": deep,
        "exact": sorted(exact.items(), key=lambda row: (-row[1], row[0])),
    }))
"""
)


def test_old_days_rolled_again_and_deep_tops_on_sqlite(on_sqlite):
    out = on_sqlite(OLD_DAY_AND_DEEP_TOP_ON_SQLITE)
    assert (out["window"], out["old_day"], out["deep"]) == (
        out["two_days_ago"],
        1 + 7,
        out["exact"],
    )
