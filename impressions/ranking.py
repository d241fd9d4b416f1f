"""Every counted object ranked by its impressions in a date range: the dashboard's full list, a
page at a time, and its CSV.

A page is one statement, in one snapshot with the roll-up's marker (stats.reading): the range's
whole months and weeks from their rollup rows, its other days from the daily rows (stats.readable,
as the top lists read them), summed per object, ranked, and counted in the same pass (a window
count over the sums). Summing the daily rows instead read every object's row of every day (30
million rows for 1,000,000 objects and 30 days), twice a page: once for the page, once for the
count. The CSV streams the same statement, unpaged, in the same kind of snapshot.
"""

from django.db import connection

from . import stats

PAGE_SIZE = 50
# Past this OFFSET no database has rows (nor a bigint the offset): the page is past the end.
MAX_OFFSET = 2**62


def ranked_page(start, end, page, size=PAGE_SIZE):
    """([(rank, object_id, impressions)] of 1-based page `page`, whether a next page exists, how
    many objects had impressions in start..end); the count is None when the page is past the end
    (it has no row to carry it: ranked_count tells)."""
    offset = (page - 1) * size
    with stats.reading():
        pieces = stats.readable(stats.kept_cover(start, end))
        if not pieces:
            return [], False, 0
        if offset > MAX_OFFSET:
            return [], False, None
        sql, params = stats.sums_query(pieces, extra=", count(*) OVER () AS objects")
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
        pieces = stats.readable(stats.kept_cover(start, end))
        if not pieces:
            return 0
        sql, params = stats.sums_query(pieces)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM ({sql}) AS ranked", params)
            return cursor.fetchone()[0]


def iter_ranked(start, end, chunk=2000):
    """Yield (rank, object_id, impressions) of every object, streamed from the database, ranked
    as the pages are, in one snapshot: its transaction stays open until the last row is read, or
    the generator is closed (a download cut short)."""
    with stats.reading():
        pieces = stats.readable(stats.kept_cover(start, end))
        if not pieces:
            return
        sql, params = stats.sums_query(pieces)
        # A server-side cursor, unless the database's DISABLE_SERVER_SIDE_CURSORS says none may
        # be used (as QuerySet.iterator() reads it): behind a pooler in transaction mode, its
        # FETCHes may reach another server connection than its DECLARE. The rows are then read
        # client-side.
        server_side = not connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")
        with connection.chunked_cursor() if server_side else connection.cursor() as cursor:
            cursor.execute(f"{sql} ORDER BY total DESC, object_id", params)
            rank = 0
            while rows := cursor.fetchmany(chunk):
                for object_id, total in rows:
                    rank += 1
                    yield rank, int(object_id), int(total)
