"""The dashboard's and the midnight benchmark's history seed, small: the rows as the roll-up
leaves them (exact sums, and each day's and each period's rows together on their pages)."""

from datetime import date

import pytest
from django.db import connection

from benchmarks.dashboard import seed
from tests.factories import make_posts

pytestmark = pytest.mark.django_db(transaction=True)

POSTS, DAYS = 300, 9
LAST_DAY = date(2026, 12, 4)


def pages(sql, params=()):
    """[(page, object id)] of the rows `sql` selects (object_id, ctid), in object order."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(int(ctid.strip("()").split(",")[0]), object_id) for object_id, ctid in cursor]


def test_the_seed_lays_out_each_day_and_each_period_as_the_roll_up_writes_them():
    make_posts(POSTS)
    facts = seed(POSTS, DAYS, LAST_DAY, log=lambda line: None)
    assert facts["daily_rows"] == POSTS * DAYS
    with connection.cursor() as cursor:
        # Every period row sums its daily rows: the roll-up's invariant.
        cursor.execute(
            "SELECT count(*) FROM impressions_period AS p WHERE count <> (SELECT sum(count)"
            " FROM impressions_daily AS d WHERE d.object_id = p.object_id AND d.day >= p.start"
            " AND d.day < CASE p.period WHEN 'w' THEN p.start + 7"
            " ELSE (p.start + interval '1 month')::date END)"
        )
        assert cursor.fetchone()[0] == 0
    oldest = pages(
        "SELECT object_id, ctid::text FROM impressions_daily WHERE day = %s ORDER BY object_id",
        [date.fromordinal(LAST_DAY.toordinal() - DAYS + 1)],
    )
    week = pages(
        "SELECT object_id, ctid::text FROM impressions_period WHERE period = 'w'"
        " AND start = %s ORDER BY object_id",
        [date(2026, 11, 30)],
    )
    for rows in (oldest, week):
        assert len(rows) == POSTS
        in_order = [page for page, _ in rows]
        # Object order is page order, and the rows fill their pages: a few pages, not a row each.
        assert in_order == sorted(in_order)
        assert len(set(in_order)) <= POSTS // 50
