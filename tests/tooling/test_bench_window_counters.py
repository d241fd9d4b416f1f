"""The window benchmark's row counters (benchmarks/window.py, which the capacity plan's database
writes come from) on the real PostgreSQL: a flush's temporary batch table is not a table of the
database's own, and its counters leave pg_stat_user_tables when its session ends."""

import pytest

from benchmarks import window
from tests.database import other_connection


@pytest.mark.django_db(transaction=True)
def test_a_temporary_batch_table_of_another_session_is_not_counted():
    before, _ = window.table_counters()
    with other_connection(autocommit=True) as other:
        other.execute("CREATE TEMP TABLE impressions_batch (n int)")
        other.execute("INSERT INTO impressions_batch SELECT generate_series(1, 1000)")
        other.execute("SELECT pg_stat_force_next_flush()")
        other.execute("SELECT 1")  # a transaction's end publishes the forced counters
        during, _ = window.table_counters()
    after, _ = window.table_counters()
    # Other writes of the test's own set-up may be published in between: a few rows, not 1,000.
    assert during - before < 1000
    assert abs(after - during) < 1000
