"""Every counted object ranked by its impressions in a date range: the dashboard's full list, a
page at a time, and its CSV.

A page is one statement, in one snapshot with the roll-up's marker (stats.reading): the range's
whole months and weeks from their rollup rows, its other days from the daily rows (stats.readable,
as the top lists read them), summed per object, ranked, and counted in the same pass (a window
count over the sums). Summing the daily rows instead read every object's row of every day (30
million rows for 1,000,000 objects and 30 days), twice a page: once for the page, once for the
count. The CSV streams the same statement, unpaged, in the same kind of snapshot.
"""

import uuid

from django.db import DatabaseError, connection

from . import stats

PAGE_SIZE = 50
# Past this OFFSET no database has rows (nor a bigint the offset): the page is past the end.
MAX_OFFSET = 2**62


def sums_sql(start, end, extra=""):
    """Inside stats.reading(): SQL and params of every object's sum in start..end, unordered
    (stats.sums_query, `extra` columns too); None when the history keeps no day of the range."""
    pieces = stats.readable(stats.kept_cover(start, end))
    return stats.sums_query(pieces, extra=extra) if pieces else None


def ranked_page(start, end, page, size=PAGE_SIZE):
    """([(rank, object_id, impressions)] of 1-based page `page`, whether a next page exists, how
    many objects had impressions in start..end); the count is None when the page is past the end
    (it has no row to carry it: ranked_count tells)."""
    offset = (page - 1) * size
    with stats.reading():
        query = sums_sql(start, end, extra=", count(*) OVER () AS objects")
        if query is None:
            return [], False, 0
        if offset > MAX_OFFSET:
            return [], False, None
        sql, params = query
        with connection.cursor() as cursor:
            cursor.execute(
                f"{sql} ORDER BY total DESC, object_id LIMIT %s OFFSET %s",
                [*params, size + 1, offset],
            )
            rows = cursor.fetchall()
    ranked = [
        (offset + index, int(object_id), int(total))
        for index, (object_id, total, _) in enumerate(rows[:size], start=1)
    ]
    return ranked, len(rows) > size, rows[0][2] if rows else None


def ranked_count(start, end):
    """How many objects had impressions in start..end."""
    with stats.reading():
        query = sums_sql(start, end)
        if query is None:
            return 0
        sql, params = query
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM ({sql}) AS ranked", params)
            return cursor.fetchone()[0]


def iter_ranked(start, end, chunk=2000):
    """Yield (rank, object_id, impressions) of every object, ranked as the pages are, read in one
    snapshot (stats.reading) and sent outside any transaction: a download goes at its client's
    pace, and a transaction left open meanwhile would hold back vacuum, or be ended by the
    database's idle_in_transaction_session_timeout mid-download.

    On PostgreSQL the ranking is a cursor declared WITH HOLD in the snapshot's transaction: its
    rows are kept at the commit and fetched a chunk at a time after it (closed when the last is
    read or the download is cut short). Where the database's DISABLE_SERVER_SIDE_CURSORS says
    none may be used (a pooler in transaction mode, whose FETCHes may reach another server
    connection), and on other databases, the rows are read client-side."""
    held = connection.vendor == "postgresql" and not connection.settings_dict.get(
        "DISABLE_SERVER_SIDE_CURSORS"
    )
    name = f"impressions_ranked_{uuid.uuid4().hex}"
    with stats.reading():
        query = sums_sql(start, end)
        if query is None:
            return
        sql, params = query
        sql = f"{sql} ORDER BY total DESC, object_id"
        if held:
            with connection.cursor() as cursor:
                cursor.execute(f"DECLARE {name} NO SCROLL CURSOR WITH HOLD FOR {sql}", params)
        else:
            client_side = connection.cursor()  # its rows stay readable after the commit
            client_side.execute(sql, params)
    if held:
        yield from held_rows(name, chunk)
        return
    with client_side:
        rank = 0
        while rows := client_side.fetchmany(chunk):
            for object_id, total in rows:
                rank += 1
                yield rank, int(object_id), int(total)


def held_rows(name, chunk):
    """(rank, object_id, impressions) of the held cursor `name`, fetched a chunk at a time; the
    cursor closed after its last row, or when the reader stops early."""
    try:
        rank = 0
        while True:
            with connection.cursor() as cursor:
                cursor.execute(f"FETCH FORWARD {int(chunk)} FROM {name}")
                rows = cursor.fetchall()
            if not rows:
                return
            for object_id, total in rows:
                rank += 1
                yield rank, int(object_id), int(total)
    finally:
        close_cursor(name)


def close_cursor(name):
    """CLOSE a held cursor, unless the connection that held it is gone (it went with it)."""
    if connection.connection is None:
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CLOSE {name}")
    except DatabaseError:
        pass  # already closed, or the session ended: the server dropped it
