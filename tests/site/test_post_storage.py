import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def test_post_table_leaves_room_for_in_place_impression_updates():
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'casusult_post'")
        (options,) = cursor.fetchone()
    assert "fillfactor=80" in (options or [])
