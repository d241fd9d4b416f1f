"""The app's migrations run backwards on a database with data: `manage.py migrate impressions
zero` is how a project removes the app (docs/impressions/quickstart.md)."""

from datetime import date

import pytest
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from impressions.models import DailyImpressions, OpenDailyImpressions
from tests.database import migrate_to

DAY = date(2026, 12, 5)


def latest_migration():
    [leaf] = MigrationLoader(connection).graph.leaf_nodes("impressions")
    return leaf


@pytest.mark.django_db(transaction=True)
def test_moving_the_open_days_back_adds_up_a_day_in_both_tables():
    """A day whose roll-up is half done (or that a late flush wrote to again after its move) has
    rows in both tables; 0004 moving the open rows back must add them, not fail on the key."""
    latest = latest_migration()
    DailyImpressions.objects.create(object_id=1, day=DAY, count=3)
    OpenDailyImpressions.objects.create(object_id=1, day=DAY, count=2)
    OpenDailyImpressions.objects.create(object_id=2, day=DAY, count=4)
    migrate_to(("impressions", "0003_history_rollup"))
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT object_id, day, count FROM impressions_daily ORDER BY object_id")
            rows = cursor.fetchall()
    finally:
        migrate_to(latest)
    assert rows == [(1, DAY, 5), (2, DAY, 4)]
