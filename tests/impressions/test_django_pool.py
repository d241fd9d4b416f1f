"""With Django's own connection pool (DATABASES OPTIONS "pool"): one walk through record, a
flush exact, parts of a flush racing their duplicates from the threads of one process (one
pool), the command, a flush task run by an RQ worker, the roll-up and the dashboard; every
connection back in the pool afterwards."""

import contextlib
import threading

import pytest
from django.core.management import call_command
from django.db import connections

from impressions import flush
from impressions.recorder import record_impressions
from impressions.tasks import flush_impressions_task
from tests.database import checked_out
from tests.factories import make_posts
from tests.queues.rq.support import rq_on, run_burst

from .walkthrough import assert_rolls_up_yesterday, flush_parts_at_once, totals, yesterday_noon

pytestmark = pytest.mark.django_db(transaction=True)

PARTS = 2


def test_record_flush_parts_roll_up_and_dashboard_with_djangos_pool(
    django_pool, standalone_buffer, staff_client, settings, monkeypatch
):
    posts = make_posts(12)
    ids = [post.id for post in posts]
    for viewer in range(3):
        record_impressions(f"u:{viewer}", ids, now=yesterday_noon())
    assert flush.flush_pending().impressions_applied == 36
    assert totals(ids) == dict.fromkeys(ids, 3)

    # Each part of a flush twice at once, from threads of one process (a worker's threads share
    # its pool of two): lined up once each says it runs, before any of them has its connection.
    # With the lock holders from the pool, they took both and each waited for another.
    for viewer in range(3, 7):
        record_impressions(f"u:{viewer}", ids)
    connections.close_all()
    lined_up = threading.Barrier(2 * PARTS, timeout=3)

    def line_up(name):
        if name == "after-snapshot":
            with contextlib.suppress(threading.BrokenBarrierError):
                lined_up.wait()

    with monkeypatch.context() as patched:
        patched.setattr(flush, "checkpoint", line_up)
        reports, errors = flush_parts_at_once(PARTS)
    assert errors == []
    assert checked_out(django_pool) == 0
    assert sum(report.impressions_applied for report in reports) == 48
    assert totals(ids) == dict.fromkeys(ids, 7)

    # The command, then a flush task run by an RQ worker: it gives its connection back.
    record_impressions("u:7", ids)
    call_command("flush_impressions", verbosity=0)
    record_impressions("u:8", ids)
    connections.close_all()
    with rq_on(settings.RQ_REDIS_URL, settings):
        flush_impressions_task.enqueue()
        run_burst()
    assert checked_out(django_pool) == 0
    assert totals(ids) == dict.fromkeys(ids, 9)

    assert_rolls_up_yesterday(ids)

    assert staff_client.get("/admin/impressions/dashboard/").status_code == 200
    csv = b"".join(staff_client.get("/admin/impressions/dashboard/objects/csv/").streaming_content)
    assert len(csv.decode().splitlines()) == 1 + 12
    connections.close_all()
    assert checked_out(django_pool) == 0
