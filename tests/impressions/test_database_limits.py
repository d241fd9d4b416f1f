"""The database's own limits met by a flush, on the real PostgreSQL: a lock on the ledger's table
(a migration). It fails the flush with an error that says what to look at, its counts kept in
Redis, and the next flush applies them once."""

import threading

import pytest
from django.db import connections
from django.test import override_settings

from casusult.models import Post
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
    ids = [p.id for p in posts]
    with other_connection() as migration:
        migration.execute(f"LOCK TABLE {Flush._meta.db_table} IN SHARE MODE")
        flush, outcome = flush_in_a_thread()
        flush.join(10)  # before: for as long as the migration's transaction stays open
        assert not flush.is_alive()
        migration.rollback()
    error = outcome["flush"]
    assert isinstance(error, DatabaseUnavailable)
    assert "IMPRESSIONS_FLUSH_LOCK_TIMEOUT (0.3 s)" in str(error)
    assert "stay in Redis" in str(error)
    assert pending_counts(ids) == dict.fromkeys(ids, 2)
    assert set(totals(posts).values()) == {0}
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
