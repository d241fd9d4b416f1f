"""Behind a pooler in transaction mode (PgBouncer, as production runs one or RDS Proxy in front
of Aurora/RDS): each transaction may run on another server connection, so nothing may count on a
session's state between transactions. One walk through: record, a flush exact, racing flushes
of parts, the roll-up, the dashboard and its CSV."""

from datetime import timedelta

import pytest

from impressions import flush, ranking, stats
from impressions.history_writer import FLUSH_LOCK, LOCK_CLASS
from impressions.recorder import record_impressions
from tests.database import other_connection
from tests.factories import make_posts

from .walkthrough import assert_rolls_up_yesterday, flush_parts_at_once, totals, yesterday_noon

pytestmark = pytest.mark.django_db(transaction=True)

PARTS = 3


class PinnedServer:
    """A client of the pooler in a transaction, holding the server connection the pooler hands
    out next (the one released last: PgBouncer reuses the most recent first), so that the next
    transaction of anyone else runs on another one."""

    def __init__(self):
        self.session = None

    def pin(self):
        if self.session is None:
            self.session = other_connection()
            self.session.execute("SELECT 1")

    def release(self):
        if self.session is not None:
            self.session.rollback()  # the server goes back to the pool (a client gone in the
            self.session.close()  # middle of a transaction would take it down)
            self.session = None


def flush_lock_free(server):
    """Whether a session past the pooler may take the flush-running lock: no flush holds it."""
    with other_connection(**server) as session:
        query = "SELECT pg_try_advisory_xact_lock(%s, %s)"
        return session.execute(query, [LOCK_CLASS, FLUSH_LOCK]).fetchone()[0]


def test_record_flush_race_roll_up_and_dashboard_through_pgbouncer(
    through_pgbouncer, standalone_buffer, staff_client, monkeypatch
):
    posts = make_posts(12)
    ids = [post.id for post in posts]
    for viewer in range(3):
        record_impressions(f"u:{viewer}", ids, now=yesterday_noon())

    # A flush whose last statements run on another server connection than its first: it holds
    # nothing once it has ended (a session's lock taken on the first would stay held there).
    pinned = PinnedServer()
    with monkeypatch.context() as patched:
        patched.setattr(
            flush, "checkpoint", lambda name: pinned.pin() if name == "after-commit" else None
        )
        try:
            assert flush.flush_pending().impressions_applied == 36
        finally:
            pinned.release()
    assert flush_lock_free(through_pgbouncer)
    assert totals(ids) == dict.fromkeys(ids, 3)

    # Each part of a flush twice at once (a duplicate delivery), while more is recorded.
    for viewer in range(3, 7):
        record_impressions(f"u:{viewer}", ids)
    reports, errors = flush_parts_at_once(PARTS)
    assert errors == []
    assert sum(report.impressions_applied for report in reports) == 48
    assert totals(ids) == dict.fromkeys(ids, 7)
    assert flush_lock_free(through_pgbouncer)

    assert_rolls_up_yesterday(ids)

    response = staff_client.get("/admin/impressions/dashboard/")
    assert response.status_code == 200
    # The full ranking streams in chunks; a chunk read after another client's transaction came
    # in between still finds its rows (no server-side cursor left on another server connection).
    start, end = stats.today() - timedelta(days=1), stats.today()
    rows = ranking.iter_ranked(start, end, chunk=1)
    first = next(rows)
    try:
        pinned.pin()
        ranked = [first, *rows]
    finally:
        pinned.release()
    assert [(rank, count) for rank, _, count in ranked] == [(r, 7) for r in range(1, 13)]
    csv = b"".join(staff_client.get("/admin/impressions/dashboard/objects/csv/").streaming_content)
    assert len(csv.decode().splitlines()) == 1 + 12
