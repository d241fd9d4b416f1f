"""The transactions that write the counts, the history and the ledger (the flush's batches, the
ledger's upkeep, the roll-up's steps, the leaders' trim): READ COMMITTED on PostgreSQL, whatever
the database's defaults say.

They are kept apart by locks taken in one order (impressions/ledger.py), each statement then
reading what the transactions it waited for committed: READ COMMITTED's snapshot per statement.
A `default_transaction_isolation` of REPEATABLE READ or SERIALIZABLE (set for the role or the
database), or DATABASES' OPTIONS["isolation_level"], took one snapshot at a transaction's first
statement, before its locks: a flush batch that waited for a roll-up batch sent the counts that
batch had moved to the open rows again (the roll-up then looped on its day, never finished), and
of a window's parts, which update the same rows, all but one failed each window ("could not
serialize access due to concurrent update").
"""

from contextlib import contextmanager

from django.db import connection, transaction


@contextmanager
def atomic(lock_timeout=None):
    """transaction.atomic(). On PostgreSQL, a transaction it starts runs at READ COMMITTED, and
    waits `lock_timeout` seconds at most for each lock (None: the database's lock_timeout), both
    set by its first statement. Inside a transaction already open (a caller's, a test's), the
    isolation stays that transaction's."""
    if connection.vendor != "postgresql":
        with transaction.atomic():
            yield
        return
    starts = not connection.in_atomic_block and connection.get_autocommit()
    with transaction.atomic():
        statements = ["SET TRANSACTION ISOLATION LEVEL READ COMMITTED"] if starts else []
        if lock_timeout is not None:
            # A number (milliseconds), no parameter: one simple query, server-side binding too.
            statements.append(f"SET LOCAL lock_timeout = {max(1, round(lock_timeout * 1000))}")
        if statements:
            with connection.cursor() as cursor:
                cursor.execute("; ".join(statements))
        yield
