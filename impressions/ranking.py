"""Every counted object ranked by its impressions in a date range: the dashboard's full list, a
page at a time, and its CSV.

Read from the daily rows, which hold every day once (ended days in the daily table, open days in
the open one), in one statement, hence one snapshot. The top lists' faster search
(stats.top_posts) stops at a top N; this list goes to the last object, so it sums the days.
"""

from django.db import connection

from .models import DailyImpressions, OpenDailyImpressions

PAGE_SIZE = 50


def ranked_query(start, end):
    """SQL and params of (object_id, impressions) in start..end, most first, ties by id."""
    daily, open_days = DailyImpressions._meta.db_table, OpenDailyImpressions._meta.db_table
    sql = (
        "SELECT object_id, SUM(count) AS total FROM ("
        f"SELECT object_id, count FROM {daily} WHERE day BETWEEN %s AND %s"
        f" UNION ALL SELECT object_id, count FROM {open_days} WHERE day BETWEEN %s AND %s"
        ") AS days GROUP BY object_id ORDER BY total DESC, object_id"
    )
    return sql, [start, end, start, end]


def ranked_page(start, end, page, size=PAGE_SIZE):
    """([(rank, object_id, impressions)] of 1-based page `page`, whether a next page exists)."""
    sql, params = ranked_query(start, end)
    offset = (page - 1) * size
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} LIMIT %s OFFSET %s", [*params, size + 1, offset])
        rows = cursor.fetchall()
    ranked = [
        (offset + index, int(object_id), int(total))
        for index, (object_id, total) in enumerate(rows[:size], start=1)
    ]
    return ranked, len(rows) > size


def ranked_count(start, end):
    """How many objects had impressions in start..end."""
    sql, params = ranked_query(start, end)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM ({sql}) AS ranked", params)
        return cursor.fetchone()[0]


def iter_ranked(start, end, chunk=2000):
    """Yield (rank, object_id, impressions) of every object, streamed from the database."""
    sql, params = ranked_query(start, end)
    # A server-side cursor, unless the database's DISABLE_SERVER_SIDE_CURSORS says none may be
    # used (as QuerySet.iterator() reads it): behind a pooler in transaction mode, its FETCHes
    # may reach another server connection than its DECLARE. The rows are then read client-side.
    server_side = not connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")
    with connection.chunked_cursor() if server_side else connection.cursor() as cursor:
        cursor.execute(sql, params)
        rank = 0
        while rows := cursor.fetchmany(chunk):
            for object_id, total in rows:
                rank += 1
                yield rank, int(object_id), int(total)
