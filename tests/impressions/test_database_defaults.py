"""A PostgreSQL set up as hardened and managed setups do, on the real server: defaults a DBA sets
for the role or the database (the isolation level), the adopter's DATABASES OPTIONS, a role that
may only read and write rows. The flush and the roll-up stay exact, and what they cannot do is
said, naming what to change, before and while it fails."""

import threading
import time
from collections import Counter
from contextlib import contextmanager
from datetime import datetime, timedelta
from datetime import time as dtime

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.core.management.base import SystemCheckError
from django.db import connection, connections
from django.test import override_settings
from django.utils import timezone

from casusult.models import Post
from impressions import flush as flush_module
from impressions import history_writer, rollup, stats
from impressions.checks import check_database_privileges
from impressions.conf import conf
from impressions.exceptions import DatabaseUnavailable
from impressions.flush import flush_pending
from impressions.history_writer import LOCK_CLASS
from impressions.models import Flush, OpenDayLeaders
from impressions.recorder import pending_counts, record_impressions
from tests.database import admin_session
from tests.factories import make_posts

from .history_check import history_sums, open_days_misplaced, rollup_mismatches
from .test_rollup import waiting_on_advisory_locks

pytestmark = pytest.mark.django_db(transaction=True)


def totals(ids):
    return dict(Post.objects.filter(id__in=ids).values_list("id", "impressions"))


def run(outcome, name, action):
    """outcome[name] = action(), or what it raised; in a thread of its own, closing its
    connections at the end."""
    try:
        outcome[name] = action()
    except Exception as error:
        outcome[name] = error
    finally:
        connections.close_all()


def started(outcome, name, action):
    thread = threading.Thread(target=run, args=(outcome, name, action))
    thread.start()
    return thread


def failures(outcome):
    return {name: str(result) for name, result in outcome.items() if isinstance(result, Exception)}


@pytest.fixture(
    params=[
        ("role or database", "repeatable read"),
        ("role or database", "serializable"),
        ("OPTIONS", "serializable"),
    ],
    ids=lambda param: f"{param[1]} by {param[0]}",
)
def stricter_isolation(request, database_default, monkeypatch):
    """Every new session's transactions at a stricter level than READ COMMITTED: a DBA's
    default_transaction_isolation for the database (as for a role), or the adopter's
    DATABASES["default"]["OPTIONS"]["isolation_level"] (psycopg then begins each transaction
    at that level)."""
    where, level = request.param
    if where == "OPTIONS":
        named = psycopg.IsolationLevel[level.upper().replace(" ", "_")]
        monkeypatch.setitem(connection.settings_dict["OPTIONS"], "isolation_level", named)
        connections.close_all()
    else:
        database_default("default_transaction_isolation", level)
    return level


def test_the_parts_of_a_window_and_their_duplicates_at_once_all_go_through(
    standalone_buffer, stricter_isolation
):
    """Four parts of a window, each delivered twice, at once, in batches of 7 counters: they
    update the same posts' rows (every shard has viewers of every post) and the same site row.
    At REPEATABLE READ or SERIALIZABLE all but one failed ("could not serialize access due to
    concurrent update"), every window; their counts waited for the next flush. The flush's
    transactions run at READ COMMITTED now: none fails, every count applied once."""
    posts = make_posts(40)
    ids = [p.id for p in posts]
    for viewer in range(300):
        record_impressions(f"u:{viewer}", ids[viewer % 7 :])
    recorded = sum(len(ids[viewer % 7 :]) for viewer in range(300))
    outcome = {}
    threads = [
        started(
            outcome,
            f"part {part}, copy {copy}",
            lambda part=part: flush_pending(part=part, parts=4, window="w", batch_size=7),
        )
        for part in range(4)
        for copy in range(2)
    ]
    for thread in threads:
        thread.join(60)
    assert failures(outcome) == {}
    assert sum(report.impressions_applied for report in outcome.values()) == recorded
    assert sum(totals(ids).values()) == recorded
    assert sum(Flush.objects.values_list("impressions_applied", flat=True)) == recorded
    assert history_sums(ids) == totals(ids)
    assert rollup_mismatches() == []


def views_of_yesterday_flushed_then_late_ones(flushed, late):
    """Yesterday: views of `flushed` at noon (2 viewers), flushed; then of `late` at 23:00 (3
    viewers), left in Redis. Returns yesterday."""
    yesterday = stats.today() - timedelta(days=1)
    noon, evening = (
        timezone.make_aware(datetime.combine(yesterday, dtime(hour))) for hour in (12, 23)
    )
    for viewer in range(2):
        record_impressions(f"u:{viewer}", flushed, now=noon)
    flush_pending()
    for viewer in range(3):
        record_impressions(f"late:{viewer}", late, now=evening)
    return yesterday


def until(waiting):
    """Return once `waiting()` says a transaction waits for a lock (10 s at most)."""
    deadline = time.monotonic() + 10
    while not waiting():
        assert time.monotonic() < deadline
        time.sleep(0.01)


class Looping(Exception):
    """The roll-up went back to finish its day again and again."""


def test_a_flush_batch_that_waited_for_a_roll_up_batch_sends_its_counts_where_the_roll_up_says(
    standalone_buffer, stricter_isolation, monkeypatch
):
    """A flush batch of late counts of the day being rolled up waits for the roll-up batch
    that holds the day; it then reads where the roll-up has got to. At REPEATABLE READ it read
    that from a snapshot taken before it waited: the counts of the posts the roll-up had just
    moved went to their open rows again, and the roll-up, which finds its day with open rows
    behind its mark, went back to finish it forever (the day's rows in both tables). At READ
    COMMITTED (the flush's and the roll-up's transactions now) they go to the daily rows."""
    posts = make_posts(6)
    ids = [p.id for p in posts]
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        yesterday = views_of_yesterday_flushed_then_late_ones(ids, ids)

        moved, go_on = threading.Event(), threading.Event()
        move = rollup.move_batch_postgresql

        def move_then_wait(*args):
            result = move(*args)
            if not moved.is_set():  # the first batch: half of the day, its lock held
                moved.set()
                go_on.wait(10)
            return result

        finish_day, finishing = rollup.finish_day, Counter()

        def finish_day_at_most_10_times(day):
            finishing["calls"] += 1
            if finishing["calls"] > 10:
                raise Looping
            return finish_day(day)

        monkeypatch.setattr(rollup, "move_batch_postgresql", move_then_wait)
        monkeypatch.setattr(rollup, "finish_day", finish_day_at_most_10_times)
        outcome = {}
        roller = started(outcome, "roll-up", lambda: rollup.roll_up(pace=0, batch_size=3))
        assert moved.wait(10)
        flusher = started(outcome, "flush", flush_pending)
        until(waiting_on_advisory_locks)  # the flush batch, for the day's
        go_on.set()
        for thread in (flusher, roller):
            thread.join(30)
    assert failures(outcome) == {}
    assert outcome["roll-up"].days == [yesterday]
    assert history_sums(ids) == totals(ids) == dict.fromkeys(ids, 5)
    assert open_days_misplaced() == []
    assert rollup_mismatches() == []


def test_the_roll_up_that_waited_for_a_flush_batch_finishes_its_day_with_that_batch_s_rows(
    standalone_buffer, stricter_isolation, monkeypatch
):
    """The roll-up, about to mark its day rolled up, waits for the flush batch that holds the
    day: a batch of late counts of posts above the roll-up's mark, which go to their open rows.
    Then it looks whether the day has open rows left. At REPEATABLE READ it looked in a snapshot
    taken before it waited: none, so the day was marked rolled up with that batch's open rows
    still there, which the history's reads then left out (the posts' history short of their
    totals) until the roll-up went back to the day and rolled it up a second time. At READ
    COMMITTED (the roll-up's transactions now) it sees them, and moves them before it finishes."""
    posts = make_posts(6)
    ids = [p.id for p in posts]
    early, late = ids[:3], ids[3:]
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        yesterday = views_of_yesterday_flushed_then_late_ones(early, late)

        to_finish, finish = threading.Event(), threading.Event()
        finish_day = rollup.finish_day

        def finish_day_when_told(day):
            if not to_finish.is_set():  # its day's rows moved (the early posts'), mark: ids[2]
                to_finish.set()
                finish.wait(10)
            return finish_day(day)

        in_batch, commit = threading.Event(), threading.Event()

        def hold_the_first_batch(name):
            if name == "before-commit" and not in_batch.is_set():
                in_batch.set()
                commit.wait(10)

        start_next_day, misplaced = rollup.start_next_day, []

        def start_next_day_noting_misplaced_rows(through):
            misplaced.extend(open_days_misplaced())  # between two days: none on either side
            return start_next_day(through)

        monkeypatch.setattr(rollup, "finish_day", finish_day_when_told)
        monkeypatch.setattr(rollup, "start_next_day", start_next_day_noting_misplaced_rows)
        monkeypatch.setattr(flush_module, "checkpoint", hold_the_first_batch)
        outcome = {}
        roller = started(outcome, "roll-up", lambda: rollup.roll_up(pace=0, batch_size=100))
        assert to_finish.wait(10)
        flusher = started(outcome, "flush", flush_pending)
        assert in_batch.wait(10)  # the late posts' open rows written, the day's lock held
        finish.set()
        until(waiting_on_advisory_locks)  # finish_day, for the day's
        commit.set()
        for thread in (flusher, roller):
            thread.join(30)
    assert failures(outcome) == {}
    assert misplaced == []
    assert outcome["roll-up"].days == [yesterday]
    assert history_sums(ids) == totals(ids) == {**dict.fromkeys(early, 2), **dict.fromkeys(late, 3)}
    assert open_days_misplaced() == []
    assert rollup_mismatches() == []


def waiting_on_a_row_lock():
    """Whether a session of the test database waits for another's row (its transaction)."""
    with admin_session() as admin:
        return admin.execute(
            "SELECT count(*) FROM pg_locks AS l JOIN pg_stat_activity AS a USING (pid)"
            " WHERE l.locktype = 'transactionid' AND NOT l.granted"
            " AND a.datname = current_database()"
        ).fetchone()[0]


def test_a_flush_whose_ledger_prune_waited_for_another_s_goes_on(
    standalone_buffer, stricter_isolation
):
    """The parts of a window start at once, and each prunes the ledger rows past
    IMPRESSIONS_LEDGER_RETENTION_DAYS before its first batch: one deleting a row another part
    is deleting waits for it. At REPEATABLE READ or SERIALIZABLE it then failed ("could not
    serialize access due to concurrent delete"), its counts waiting for the next flush, whenever
    a row had just aged out. The ledger's upkeep runs at READ COMMITTED now: the row is gone, the
    flush goes on."""
    posts = make_posts(2)
    ids = [p.id for p in posts]
    record_impressions("u:1", ids)
    old = timezone.now() - timedelta(days=conf.LEDGER_RETENTION_DAYS + 1)
    Flush.objects.create(
        id=f"{old:%Y%m%dT%H%M%S}-0000aged", started_at=old, outcome=Flush.Outcome.APPLIED
    )
    with admin_session() as another_part:
        another_part.execute("BEGIN")
        another_part.execute(
            f"DELETE FROM {Flush._meta.db_table} WHERE started_at < %s", [old + timedelta(1)]
        )
        outcome = {}
        flusher = started(outcome, "flush", flush_pending)
        until(waiting_on_a_row_lock)  # its prune, for the row being deleted
        another_part.execute("COMMIT")
        flusher.join(30)
    assert failures(outcome) == {}
    assert totals(ids) == dict.fromkeys(ids, 1)
    assert not Flush.objects.filter(started_at__lt=old + timedelta(1)).exists()


def check_ids(errors):
    return [error.id for error in errors]


def test_a_role_that_may_not_create_temporary_tables_fails_the_database_check(rows_only_role):
    """Every flush batch copies its lines into a temporary table: without TEMPORARY every flush
    failed, and no check said so before the first one did. `check --database default` run as
    the workers' role names the privilege and the GRANT; with it, no error."""
    role, grant = rows_only_role
    errors = check_database_privileges(databases=["default"])
    assert check_ids(errors) == ["impressions.W010"]
    name = connection.settings_dict["NAME"]
    assert f'GRANT TEMPORARY ON DATABASE "{name}" TO "{role}"' in errors[0].hint
    grant(f'GRANT TEMPORARY ON DATABASE "{name}" TO "{role}"')
    assert check_database_privileges(databases=["default"]) == []


def test_migrate_runs_as_a_role_without_temporary_and_says_what_the_workers_need(
    rows_only_role, capsys
):
    """The locked-down setup runs the migrations as the tables' owner, TEMPORARY granted to the
    workers' role only: the checks ran at `migrate` as Errors, so `migrate` refused to run there
    (SystemCheckError) for a privilege only a flush needs. They are warnings: `migrate` goes on
    and prints them; `check --database default --fail-level WARNING` fails on them."""
    call_command("migrate", verbosity=0, skip_checks=False)
    assert "impressions.W010" in capsys.readouterr().err
    with pytest.raises(SystemCheckError):
        call_command("check", databases=["default"], fail_level="WARNING")


def test_a_table_the_role_may_not_write_fails_the_database_check(rows_only_role):
    """A table of a later migration, made by the owner without ALTER DEFAULT PRIVILEGES, or a
    privilege revoked: the check names the table, the privileges missing and the GRANT."""
    role, grant = rows_only_role
    name = connection.settings_dict["NAME"]
    grant(f'GRANT TEMPORARY ON DATABASE "{name}" TO "{role}"')
    grant(f'REVOKE UPDATE ON casusult_post FROM "{role}"')
    grant(f'REVOKE INSERT, DELETE ON impressions_daily_open FROM "{role}"')
    errors = check_database_privileges(databases=["default"])
    assert check_ids(errors) == ["impressions.W011", "impressions.W011"]
    said = "\n".join(f"{error.msg} {error.hint}" for error in errors)
    assert 'lacks UPDATE on the table "casusult_post"' in said
    assert 'lacks INSERT, DELETE on the table "impressions_daily_open"' in said
    assert f'GRANT INSERT, DELETE ON "impressions_daily_open" TO "{role}"' in said


def test_a_role_granted_update_of_the_count_column_only_passes_the_database_check(
    rows_only_role, standalone_buffer
):
    """The flush updates the counted model's count column alone: a role granted UPDATE on that
    column (GRANT UPDATE (impressions) ON …) flushes, and the check, which asked for UPDATE on
    the whole table, no longer says it would fail."""
    role, grant = rows_only_role
    name = connection.settings_dict["NAME"]
    grant(f'GRANT TEMPORARY ON DATABASE "{name}" TO "{role}"')
    grant(f'REVOKE UPDATE ON casusult_post FROM "{role}"')
    grant(f'GRANT UPDATE ({conf.COUNT_FIELD}) ON casusult_post TO "{role}"')
    assert check_database_privileges(databases=["default"]) == []
    posts = make_posts(2)
    ids = [p.id for p in posts]
    record_impressions("u:1", ids)
    flush_pending()
    assert totals(ids) == dict.fromkeys(ids, 1)
    grant(f'REVOKE UPDATE ({conf.COUNT_FIELD}) ON casusult_post FROM "{role}"')
    assert check_ids(check_database_privileges(databases=["default"])) == ["impressions.W011"]


def test_a_flush_whose_role_may_not_create_temporary_tables_says_so_and_keeps_its_counts(
    rows_only_role, standalone_buffer
):
    """The flush's error names the privilege and the fix (before: PostgreSQL's words alone);
    the counts wait in Redis, and once it is granted the next flush applies them once."""
    role, grant = rows_only_role
    posts = make_posts(3)
    ids = [p.id for p in posts]
    for viewer in range(2):
        record_impressions(f"u:{viewer}", ids)
    with pytest.raises(DatabaseUnavailable) as raised:
        flush_pending()
    for words in ("TEMPORARY", "GRANT TEMPORARY ON DATABASE", "check --database default"):
        assert words in str(raised.value)
    assert pending_counts(ids) == dict.fromkeys(ids, 2)
    assert set(totals(ids).values()) == {0}
    name = connection.settings_dict["NAME"]
    grant(f'GRANT TEMPORARY ON DATABASE "{name}" TO "{role}"')
    report = flush_pending()
    assert len(report.recovered) == 1
    assert totals(ids) == dict.fromkeys(ids, 2) == history_sums(ids)
    assert rollup.roll_up(pace=0).days is not None  # the roll-up needs no more than the flush


def test_the_leaders_trim_waits_for_a_lock_as_long_as_the_flush_s_batches(
    standalone_buffer, database_default, monkeypatch
):
    """A lock_timeout a DBA set for the role or the database (1 s; 100 ms here) is the flush's
    batches' no longer: IMPRESSIONS_FLUSH_LOCK_TIMEOUT is. The leaders' trim at the end of a
    flush, waiting for a leader row another part's batch held, kept the database's: the flush
    failed after applying everything, its error naming IMPRESSIONS_FLUSH_LOCK_TIMEOUT (60 s)."""
    monkeypatch.setattr(OpenDayLeaders, "LEADERS", 2)
    today = stats.today()
    OpenDayLeaders.objects.bulk_create(
        OpenDayLeaders(day=today, object_id=object_id, count=10 - object_id)
        for object_id in range(1, 7)
    )
    database_default("lock_timeout", "100ms")
    locked = threading.Event()

    def another_part_s_batch():
        with admin_session() as batch:
            batch.execute("BEGIN")
            batch.execute(
                "SELECT FROM impressions_daily_leaders WHERE day = %s AND object_id = 6 FOR UPDATE",
                [today],
            )
            locked.set()
            time.sleep(0.5)
            batch.execute("ROLLBACK")

    holder = threading.Thread(target=another_part_s_batch)
    holder.start()
    assert locked.wait(10)
    report = flush_pending()
    holder.join(10)
    assert report.outcome == Flush.Outcome.EMPTY
    assert sorted(OpenDayLeaders.objects.values_list("object_id", flat=True)) == [1, 2]


def test_the_leaders_trim_that_waited_for_another_part_s_batch_goes_on(
    standalone_buffer, stricter_isolation, monkeypatch
):
    """The trim at the end of a flush waits for a leader row another part's batch is updating.
    At REPEATABLE READ or SERIALIZABLE it then failed ("could not serialize access due to
    concurrent update"): the flush, which had applied everything, said it failed. The trim runs
    at READ COMMITTED now: it deletes the row as it is once that batch committed."""
    monkeypatch.setattr(OpenDayLeaders, "LEADERS", 2)
    today = stats.today()
    OpenDayLeaders.objects.bulk_create(
        OpenDayLeaders(day=today, object_id=object_id, count=10 - object_id)
        for object_id in range(1, 7)
    )
    with admin_session() as another_part:
        another_part.execute("BEGIN")
        another_part.execute(
            "UPDATE impressions_daily_leaders SET count = count + 1"
            " WHERE day = %s AND object_id = 6",
            [today],
        )
        outcome = {}
        flusher = started(outcome, "flush", flush_pending)
        until(waiting_on_a_row_lock)  # the trim, for the leader row
        another_part.execute("COMMIT")
        flusher.join(30)
    assert failures(outcome) == {}
    assert outcome["flush"].outcome == Flush.Outcome.EMPTY
    assert sorted(OpenDayLeaders.objects.values_list("object_id", flat=True)) == [1, 2]


@contextmanager
def lock_held_by_a_flush_batch(key):
    """While the block runs, a transaction of another connection holds the advisory lock `key`
    shared, as a flush batch in flight holds the roll-up state's and its days' (history_writer)."""
    with admin_session() as batch:
        batch.execute("BEGIN")
        batch.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", [LOCK_CLASS, key])
        try:
            yield
        finally:
            batch.execute("ROLLBACK")


def released_after(seconds, key):
    """A thread holding `key` as lock_held_by_a_flush_batch does, for `seconds`; started once
    the lock is held."""
    held = threading.Event()

    def hold():
        with lock_held_by_a_flush_batch(key):
            held.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(10)
    return thread


def yesterday_s_history(viewers=2):
    """Posts with `viewers` impressions each from yesterday, flushed: a day for the roll-up."""
    ids = [post.id for post in make_posts(4)]
    noon = timezone.make_aware(
        datetime.combine(stats.today() - timedelta(days=1), dtime(12)),
        timezone.get_default_timezone(),
    )
    for viewer in range(viewers):
        record_impressions(f"u:{viewer}", ids, now=noon)
    flush_pending()
    return ids


# The locks a roll-up step waits for: a flush batch's in flight holds them (the roll-up tries
# a day's before its batch, but a flush batch may come in between: wait_for_flushes patched).
ROLL_UP_WAITS = {
    "the state's lock (its start)": lambda day: history_writer.STATE_LOCK,
    "the day's lock (a batch)": lambda day: day.toordinal(),
}


@pytest.mark.parametrize("lock_of", ROLL_UP_WAITS.values(), ids=ROLL_UP_WAITS.keys())
def test_the_roll_up_waits_for_a_lock_as_long_as_the_flush_s_batches(
    standalone_buffer, database_default, monkeypatch, lock_of
):
    """A lock_timeout a DBA set for the role or the database (1 s; 100 ms here) is the roll-up's
    no longer: IMPRESSIONS_FLUSH_LOCK_TIMEOUT is, as for the flush's batches. A roll-up step
    waiting for a flush batch in flight longer than the database's failed ("canceling statement
    due to lock timeout"), and the roll-up went on only at its next run."""
    ids = yesterday_s_history()
    monkeypatch.setattr(rollup, "wait_for_flushes", lambda *days, **kwargs: True)
    database_default("lock_timeout", "100ms")
    holder = released_after(0.5, lock_of(stats.today() - timedelta(days=1)))
    report = rollup.roll_up(pace=0)
    holder.join(10)
    assert report.days == [stats.today() - timedelta(days=1)]
    assert rollup_mismatches() == []
    assert history_sums(ids) == totals(ids)


@override_settings(IMPRESSIONS_FLUSH_LOCK_TIMEOUT=0.2)
def test_a_roll_up_that_waits_longer_than_the_flush_lock_timeout_names_it_and_goes_on_next_time(
    standalone_buffer,
):
    """The roll-up's error names the setting that bounded its wait (before: PostgreSQL's words
    alone, or no bound at all with the database's default); the next roll-up goes on."""
    ids = yesterday_s_history()
    holder = released_after(3, history_writer.STATE_LOCK)
    started = time.monotonic()
    with pytest.raises(CommandError) as raised:
        call_command("rollup_impressions", verbosity=0)
    assert time.monotonic() - started < 2
    holder.join(10)
    said = str(raised.value)
    assert "IMPRESSIONS_FLUSH_LOCK_TIMEOUT (0.2 s)" in said
    assert "lock timeout" in said  # the database's own words stay
    assert rollup.roll_up(pace=0).days == [stats.today() - timedelta(days=1)]
    assert history_sums(ids) == totals(ids)


def test_the_locks_that_say_a_flush_or_a_roll_up_runs_outlast_the_idle_in_transaction_timeout(
    database_default,
):
    """The lock that says a roll-up runs (the dashboard reads it) and the one that says a flush
    runs (the roll-up keeps out of its way) are held by a transaction of a connection of their
    own, idle for the whole run. An idle_in_transaction_session_timeout a DBA set (10 s; 200 ms
    here) ended it: a roll-up longer than that showed as stopped while it ran, and the roll-up
    started batches beside a flush, the server logging a FATAL each time. At REPEATABLE READ its
    snapshot also held the database's xmin horizon (vacuum) back for the whole run."""
    database_default("idle_in_transaction_session_timeout", "200ms")
    database_default("default_transaction_isolation", "repeatable read")
    with history_writer.rollup_running(), history_writer.flush_running():
        time.sleep(0.5)
        assert history_writer.rollup_is_running()
        assert not rollup.wait_for_flushes(patience=0)
        with admin_session() as admin:
            holders = admin.execute(
                "SELECT backend_xmin FROM pg_stat_activity WHERE datname = current_database()"
                " AND state = 'idle in transaction' AND query LIKE %s",
                ["%pg_advisory_xact_lock_shared%"],
            ).fetchall()
    assert holders == [(None,), (None,)]


def test_the_lock_holders_turn_off_the_transaction_timeout_where_the_server_has_it():
    """PostgreSQL 17's transaction_timeout ends an idle lock holder just as the idle timeout
    does; older servers have no such parameter (SET fails: "unrecognized configuration
    parameter"), so the statement is built for the server the holder talks to."""
    on_15 = history_writer.holder_statement(1, -2, server_version=150020)
    on_17 = history_writer.holder_statement(1, -2, "60s", server_version=170000)
    assert "transaction_timeout" not in on_15.replace("idle_in_transaction_session_timeout", "")
    assert on_17.split("; ") == [
        "BEGIN ISOLATION LEVEL READ COMMITTED",
        "SET LOCAL idle_in_transaction_session_timeout = 0",
        "SET LOCAL transaction_timeout = 0",
        "SET LOCAL lock_timeout = '60s'",
        "SELECT pg_advisory_xact_lock_shared(1, -2)",
    ]


def test_the_locks_that_say_a_flush_or_a_roll_up_runs_outlast_the_transaction_timeout(
    database_default,
):
    """A transaction_timeout a DBA set (PostgreSQL 17+; 200 ms here) ended the lock holders as
    the idle-in-transaction timeout did, and the lock with them."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        if int(cursor.fetchone()[0]) < 170000:
            pytest.skip("transaction_timeout is PostgreSQL 17's")
    database_default("transaction_timeout", "200ms")
    with history_writer.rollup_running(), history_writer.flush_running():
        time.sleep(0.5)
        assert history_writer.rollup_is_running()
        assert not rollup.wait_for_flushes(patience=0)
