"""Behind a pooler in transaction mode (PgBouncer, as production runs one or RDS Proxy in front
of Aurora/RDS): each transaction may run on another server connection, so nothing may count on a
session's state between transactions. One walk through: record, a flush exact, racing flushes
of parts, the roll-up, the dashboard and its CSV."""

import threading
from datetime import datetime, time, timedelta

import pytest
from django.db import connections
from django.test import override_settings
from django.utils import timezone

from casusult.models import Post
from impressions import flush, ranking, rollup, stats
from impressions.history_writer import FLUSH_LOCK, LOCK_CLASS
from impressions.recorder import record_impressions
from tests.database import other_connection
from tests.factories import make_posts

from .history_check import history_sums, rollup_mismatches

pytestmark = pytest.mark.django_db(transaction=True)

PARTS = 3


def yesterday_noon():
    day = stats.today() - timedelta(days=1)
    return timezone.make_aware(datetime.combine(day, time(12)), timezone.get_default_timezone())


def totals(ids):
    return dict(Post.objects.filter(id__in=ids).values_list("id", "impressions"))


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
    reports, errors = [], []

    def part(number):
        try:
            reports.append(flush.flush_pending(part=number, parts=PARTS))
        except Exception as error:  # reported by the assertion below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=part, args=(n % PARTS,)) for n in range(2 * PARTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sum(report.impressions_applied for report in reports) == 48
    assert totals(ids) == dict.fromkeys(ids, 7)
    assert flush_lock_free(through_pgbouncer)

    # The roll-up of yesterday, every row once, where no flush holds it back.
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        report = rollup.roll_up()
    assert report.days == [stats.today() - timedelta(days=1)]
    assert rollup_mismatches() == []
    assert history_sums(ids) == totals(ids)

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
