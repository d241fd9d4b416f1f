"""The database's own limits met by a flush, on the real PostgreSQL: a lock on the ledger's table
(a migration), a statement timeout set for the database, a deadlock with a transaction of the
site. Each fails the flush with an error that says what to look at, its counts kept in Redis,
and the next flush applies them once. And a server (or pooler) that takes no more clients: the
flush, whose own connection is open, goes on."""

import threading
import time
from datetime import datetime, timedelta
from datetime import time as dtime

import pytest
from django.conf import settings
from django.db import connection, connections
from django.test import override_settings
from django.utils import timezone

import devservices
from casusult.models import Post
from impressions import rollup, stats
from impressions.exceptions import DatabaseUnavailable
from impressions.flush import flush_pending
from impressions.models import Flush
from impressions.recorder import pending_counts
from impressions.recorder import record_impressions as record
from tests.database import other_connection
from tests.factories import make_posts

from .history_check import history_sums

pytestmark = pytest.mark.django_db(transaction=True)


def view_all(posts, viewers):
    for viewer in range(viewers):
        record(f"u:{viewer}", [p.id for p in posts])


def totals(posts):
    return dict(Post.objects.filter(id__in=[p.id for p in posts]).values_list("id", "impressions"))


def flush_in_a_thread():
    """(thread, outcome): flush_pending() running in a thread of its own; outcome["flush"] is its
    report or its error once it ends."""
    outcome = {}

    def run():
        try:
            outcome["flush"] = flush_pending()
        except Exception as error:
            outcome["flush"] = error
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def assert_failed_keeping_the_counts(error, posts, viewers, *words):
    """`error` is the flush's DatabaseUnavailable, saying `words` and that the counts stay in
    Redis, where every one of them waits (`viewers` views of each of `posts`)."""
    assert isinstance(error, DatabaseUnavailable), error
    for word in (*words, "stay in Redis"):
        assert word in str(error)
    ids = [p.id for p in posts]
    assert pending_counts(ids) == dict.fromkeys(ids, viewers)
    assert set(totals(posts).values()) == {0}


def assert_next_flush_applies_them_once(posts, viewers):
    report = flush_pending()
    assert len(report.recovered) == 1
    assert set(totals(posts).values()) == {viewers}
    assert history_sums([p.id for p in posts]) == totals(posts)
    assert sum(Flush.objects.values_list("impressions_applied", flat=True)) == viewers * len(posts)


@override_settings(IMPRESSIONS_FLUSH_LOCK_TIMEOUT=0.3)
def test_a_flush_behind_a_lock_on_the_ledger_s_table_gives_up_and_keeps_its_counts(
    standalone_buffer,
):
    """A migration's lock on the ledger's table (CREATE INDEX takes SHARE) held in a transaction
    left open: the ledger's upkeep, before the first batch, waited for as long as it stayed
    open (every flush, counting stopped), though the batches give up after
    IMPRESSIONS_FLUSH_LOCK_TIMEOUT. It gives up too now, naming the setting."""
    posts = make_posts(3)
    view_all(posts, 2)
    with other_connection() as migration:
        migration.execute(f"LOCK TABLE {Flush._meta.db_table} IN SHARE MODE")
        flush, outcome = flush_in_a_thread()
        flush.join(10)  # before: for as long as the migration's transaction stays open
        assert not flush.is_alive()
        migration.rollback()
    assert_failed_keeping_the_counts(
        outcome["flush"], posts, 2, "IMPRESSIONS_FLUSH_LOCK_TIMEOUT (0.3 s)"
    )
    assert_next_flush_applies_them_once(posts, 2)


@override_settings(IMPRESSIONS_FLUSH_LOCK_TIMEOUT=0.3)
def test_an_empty_flush_behind_a_lock_on_the_ledger_s_table_gives_up_too(standalone_buffer):
    """With nothing pending, the flush's one write is its ledger row (outcome "empty"): it waited
    for the migration's lock as the upkeep did."""
    with other_connection() as migration:
        migration.execute(f"LOCK TABLE {Flush._meta.db_table} IN SHARE MODE")
        flush, outcome = flush_in_a_thread()
        flush.join(10)
        assert not flush.is_alive()
        migration.rollback()
    assert "IMPRESSIONS_FLUSH_LOCK_TIMEOUT (0.3 s)" in str(outcome["flush"])
    assert flush_pending().outcome == Flush.Outcome.EMPTY


def test_a_statement_timeout_shorter_than_a_batch_is_named_in_the_flush_s_error(
    standalone_buffer, database_default
):
    """A statement_timeout set for the workers' role or the database, shorter than a batch takes,
    cancels the same batch at every flush: nothing is counted until it is raised. The error said
    only "canceling statement due to statement timeout"; it now names the setting, where it is set
    and what to change (or IMPRESSIONS_FLUSH_BATCH_SIZE)."""
    posts = make_posts(400)
    view_all(posts, 3)
    ids = [p.id for p in posts]
    database_default("statement_timeout", "1ms")
    with pytest.raises(DatabaseUnavailable) as raised:
        flush_pending()
    message = str(raised.value)
    assert "statement_timeout" in message
    assert "IMPRESSIONS_FLUSH_BATCH_SIZE" in message
    assert "stay in Redis" in message
    database_default("statement_timeout", "0")
    assert sum(pending_counts(ids).values()) + sum(totals(posts).values()) == 3 * 400
    assert_next_flush_applies_them_once(posts, 3)


def test_a_read_only_database_is_named_in_the_flush_s_error(standalone_buffer, database_default):
    """DATABASE_URL leading to a server that takes no writes (a replica, a writer endpoint in the
    middle of a failover, default_transaction_read_only): every flush fails until it leads to the
    primary, and the error now says so (before: "cannot execute DELETE in a read-only
    transaction"). The flush closes its connection, so the next one connects anew (a failover's
    endpoint leads to the new primary by then)."""
    posts = make_posts(3)
    view_all(posts, 2)
    database_default("default_transaction_read_only", "on")
    with pytest.raises(DatabaseUnavailable) as raised:
        flush_pending()
    assert connection.connection is None
    database_default("default_transaction_read_only", "off")
    assert_failed_keeping_the_counts(raised.value, posts, 2, "read-only", "DATABASE", "primary")
    assert_next_flush_applies_them_once(posts, 2)


def batch_waiting_for_a_lock(seconds=10):
    """Whether a flush batch's statements wait for a lock within `seconds` (read in a session of
    its own: a transaction reads pg_stat_activity once)."""
    deadline = time.monotonic() + seconds
    with other_connection(autocommit=True) as watcher:
        while time.monotonic() < deadline:
            if watcher.execute(
                "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE %s)",
                ["%WITH totals%"],
            ).fetchone()[0]:
                return True
            time.sleep(0.01)
    return False


def test_a_deadlock_with_a_transaction_of_the_site_is_named_in_the_flush_s_error(
    standalone_buffer,
):
    """The flush locks the counted rows in id order; a transaction of the site that locks two of
    them the other way round deadlocks with a batch, and PostgreSQL ends one of the two. When it
    is the batch, the error now says why and what the site can change; the counts stay in Redis."""
    posts = make_posts(2)
    low, high = sorted(p.id for p in posts)
    view_all(posts, 2)
    table = Post._meta.db_table
    with other_connection() as site:
        # The flush's batch (deadlock_timeout 1 s) finds the cycle before the site's (10 s) does.
        site.execute("SET deadlock_timeout = '10s'")
        site.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE", [high])
        flush, outcome = flush_in_a_thread()
        assert batch_waiting_for_a_lock()  # the batch holds `low`, waits for `high`
        site.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE", [low])
        site.rollback()
        flush.join(10)
    assert_failed_keeping_the_counts(outcome["flush"], posts, 2, "deadlock", "in id order")
    assert_next_flush_applies_them_once(posts, 2)


@pytest.fixture
def pooler_of_one_client(transactional_db, monkeypatch):
    """Django's connections through a PgBouncer (transaction mode) that takes one client at once
    and refuses the next ("no more connections allowed"), as a pooler, or a server at its
    max_connections, refuses clients past its limit."""
    if devservices.pgbouncer_binary() is None:
        pytest.skip("pgbouncer is not installed: `make test` installs Debian's package as root")
    params = settings.DATABASES["default"]
    pooler = devservices.PgBouncerProcess(
        params["HOST"] or "127.0.0.1",
        params["PORT"] or 5432,
        params["USER"] or "postgres",
        max_client_conn=1,
    )
    try:
        pooler.start()
    except devservices.ServiceUnavailable as error:
        pytest.fail(f"Cannot start pgbouncer for the test: {error}")
    connections.close_all()
    monkeypatch.setitem(connection.settings_dict, "HOST", "127.0.0.1")
    monkeypatch.setitem(connection.settings_dict, "PORT", str(pooler.port))
    try:
        yield pooler
    finally:
        connections.close_all()
        pooler.stop()


def test_a_flush_whose_connection_is_open_goes_on_when_no_other_can_be_opened(
    pooler_of_one_client, standalone_buffer, caplog
):
    """A flush opens a second connection, which only tells the roll-up that a flush runs
    (history_writer.flush_running). With the pooler (or the server) taking no more clients, the
    flush failed for that alone, its own connection open and working: every flush, for as long
    as the limit was reached. It now goes on without it, and says so."""
    posts = make_posts(3)  # Django's connection is the pooler's one client from here on
    view_all(posts, 2)
    report = flush_pending()
    assert report.impressions_applied == 6
    assert set(totals(posts).values()) == {2}
    assert history_sums([p.id for p in posts]) == totals(posts)
    assert "that says a flush runs" in caplog.text
    assert "going on without it" in caplog.text


def test_a_roll_up_whose_connection_is_open_goes_on_when_no_other_can_be_opened(
    pooler_of_one_client, standalone_buffer, caplog
):
    """The roll-up's second connection only tells the dashboard that it runs
    (history_writer.rollup_running): refused, the roll-up failed for that alone."""
    posts = make_posts(2)
    yesterday = stats.today() - timedelta(days=1)
    noon = timezone.make_aware(datetime.combine(yesterday, dtime(12)))
    for viewer in range(3):
        record(f"u:{viewer}", [p.id for p in posts], now=noon)
    flush_pending()
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        report = rollup.roll_up()
    assert report.days == [yesterday]
    assert report.rows_moved == 2
    assert history_sums([p.id for p in posts]) == totals(posts) == {p.id: 3 for p in posts}
    assert "that says a roll-up runs" in caplog.text
