"""With psycopg 3's server-side parameter binding (DATABASES OPTIONS "server_side_binding", which
Django documents): one walk through record, a flush exact in several batches, parts of a flush
racing their duplicates, the command, the leaders' trim, the roll-up, the dashboard with its CSV,
and the roll-up's prune."""

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.test import override_settings

from impressions import flush, history_writer, rollup, stats
from impressions.models import DailyImpressions, OpenDayLeaders
from impressions.recorder import record_impressions
from tests.factories import make_posts

from .walkthrough import assert_rolls_up_yesterday, flush_parts_at_once, totals, yesterday_noon

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server_side_binding(transactional_db):
    """OPTIONS["server_side_binding"] = True on the default database: its cursors send the
    parameters apart from the SQL (PostgreSQL's extended protocol, one statement a query).

    OPTIONS is put back here, not by monkeypatch: its undo may come after the database's
    teardown, whose connection would bind server-side."""
    params = connection.settings_dict
    options = params["OPTIONS"]
    connections.close_all()
    params["OPTIONS"] = {**options, "server_side_binding": True}
    try:
        yield
    finally:
        connections.close_all()
        params["OPTIONS"] = options


def test_record_flush_roll_up_and_dashboard_with_server_side_binding(
    server_side_binding, standalone_buffer, staff_client, monkeypatch
):
    """Every flush failed, its counts kept in Redis: a batch sent its statements (the day locks,
    the totals, the history) in one query with parameters, which the extended protocol refuses
    ("cannot insert multiple commands into a prepared statement")."""
    with connection.cursor() as cursor:
        assert not isinstance(cursor.cursor, psycopg.ClientCursor)  # the option is in effect
    posts = make_posts(12)
    ids = [post.id for post in posts]
    for viewer in range(3):
        record_impressions(f"u:{viewer}", ids, now=yesterday_noon())
    report = flush.flush_pending(batch_size=5)
    assert report.impressions_applied == 36
    assert totals(ids) == dict.fromkeys(ids, 3)

    for viewer in range(3, 7):
        record_impressions(f"u:{viewer}", ids)
    connections.close_all()
    reports, errors = flush_parts_at_once(2)
    assert errors == []
    assert sum(report.impressions_applied for report in reports) == 48
    assert totals(ids) == dict.fromkeys(ids, 7)

    record_impressions("u:7", ids)
    call_command("flush_impressions", verbosity=0)
    assert totals(ids) == dict.fromkeys(ids, 8)

    # Today's leaders, trimmed to the top once a day holds twice as many.
    monkeypatch.setattr(OpenDayLeaders, "LEADERS", 2)
    assert history_writer.trim_leaders() > 0
    assert OpenDayLeaders.objects.filter(day=stats.today()).count() == 2

    assert_rolls_up_yesterday(ids)

    assert staff_client.get("/admin/impressions/dashboard/").status_code == 200
    csv = b"".join(staff_client.get("/admin/impressions/dashboard/objects/csv/").streaming_content)
    assert len(csv.decode().splitlines()) == 1 + 12

    # The roll-up's prune: yesterday's history, older than a history of one day.
    with override_settings(IMPRESSIONS_HISTORY_DAYS=1):
        assert rollup.roll_up(pace=0).rows_pruned > 0
    assert not DailyImpressions.objects.filter(day__lt=stats.today()).exists()


def test_a_cursor_wrapper_of_the_connection_sees_the_batch_statement(
    server_side_binding, standalone_buffer, monkeypatch
):
    """The batch's statements, sent on a client-side binding cursor, went past the wrapper that
    connection.cursor() returned: django-debug-toolbar wraps each cursor so (a subclass of the
    cursor's wrapper class, around the driver's cursor), and its SQL panel lacked the statement
    that writes the counts, whatever else it showed."""
    seen = []

    def recording(wrapper_class):
        class RecordingCursorWrapper(wrapper_class):
            def execute(self, sql, params=None):
                seen.append(sql)
                return super().execute(sql, params)

        return RecordingCursorWrapper

    plain_cursor = connection.cursor

    def wrapped_cursor():
        cursor = plain_cursor()
        return recording(type(cursor))(cursor.cursor, connection)

    monkeypatch.setattr(connection, "cursor", wrapped_cursor)
    posts = make_posts(4)
    ids = [post.id for post in posts]
    record_impressions("u:1", ids)
    assert flush.flush_pending().impressions_applied == 4
    assert totals(ids) == dict.fromkeys(ids, 1)
    assert [sql for sql in seen if "WITH totals AS MATERIALIZED" in sql] != []
