"""Dashboard: admin page render times over a history of 400 days for 100,000 posts."""

import time
from datetime import timedelta

from .harness import format_seconds, markdown_table, median, percentile

# v2: the last day's rows in the open days' table, the others rolled up (impressions migration 0004).
# v3: the rows laid out as the roll-up writes them (below).
SEED_TABLE = "bench_history_seed_v3"
HISTORY_POSTS = 100_000
HISTORY_DAYS = 400
WARMUP = 2

# Every one of the first HISTORY_POSTS posts has a row on each of HISTORY_DAYS days: the dense
# worst case for row counts. Popularity is heavy-tailed, as on real sites (Zipf: the post of
# rank r gets ~2000/r a day), with a per-day jitter from a hash; every row has at least 1.
# As the flush leaves it: the ended days rolled up (daily rows, week and month rows), the last
# day ("today") open, its rows in the open days' table. Laid out as the roll-up writes them: a
# day's daily rows together, in object order, one day after the other; a period's rows together
# (each roll-up writes the week's and the month's rows again, in object order). Rows in object
# order, each object's days together, would put every row of a day on a page of its own: the
# pruning of the oldest day and the week and month rows' updates would then touch (and write
# full-page images of) a page a row, as no roll-up ever leaves them.
SEED_DAYS = """
INSERT INTO %(table)s (object_id, day, count)
SELECT post.id, %%(last_day)s::date - d,
       1 + floor(2000.0 / post.rank * (0.5 + ((post.id * 7919 + d * 104729) %%%% 101) / 100.0))
FROM (SELECT id, row_number() OVER (ORDER BY id) AS rank FROM casusult_post ORDER BY id
      LIMIT %%(posts)s) AS post
CROSS JOIN generate_series(%%(first)s, %%(last)s) AS d
ORDER BY d DESC, post.id
"""
SEED_ROLLUPS = """
INSERT INTO impressions_period (period, start, object_id, count)
SELECT * FROM (
  SELECT 'w', date_trunc('week', day)::date AS start, object_id, sum(count)
  FROM impressions_daily GROUP BY 2, 3
  UNION ALL
  SELECT 'm', date_trunc('month', day)::date AS start, object_id, sum(count)
  FROM impressions_daily GROUP BY 2, 3
) AS periods ORDER BY start, 1, object_id
"""
SEED_SITE = """
INSERT INTO impressions_site_daily (day, count)
SELECT day, sum(count) FROM (SELECT day, count FROM impressions_daily
                             UNION ALL SELECT day, count FROM impressions_daily_open) AS days
GROUP BY day
"""
# The open day's leaders, as the flush keeps them (impressions.models.OpenDayLeaders).
SEED_LEADERS = """
INSERT INTO impressions_daily_leaders (day, object_id, count)
SELECT day, object_id, count FROM impressions_daily_open
ORDER BY count DESC, object_id LIMIT %(leaders)s
"""
SEED_ROLLED_THROUGH = """
INSERT INTO impressions_rollup (id, rolled_through, rolling_rows, rolling_moved)
VALUES (1, %(last_day)s::date - 1, 0, 0)
ON CONFLICT (id) DO UPDATE SET rolled_through = EXCLUDED.rolled_through, rolling_day = NULL,
rolling_mark = NULL, rolling_rows = 0, rolling_moved = 0
"""
HISTORY_TABLES = (
    "impressions_daily",
    "impressions_daily_open",
    "impressions_daily_leaders",
    "impressions_period",
    "impressions_site_daily",
)


def ensure_history(posts=HISTORY_POSTS, days=HISTORY_DAYS, log=print):
    """Seed the history once (INSERT … SELECT generate_series); returns (last day, seed facts)."""
    from django.db import connection
    from django.utils import timezone

    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {SEED_TABLE} (posts int, days int, last_day date,"
            " seconds float, daily_rows bigint, rollup_rows bigint, bytes bigint)"
        )
        cursor.execute(f"SELECT * FROM {SEED_TABLE}")
        row = cursor.fetchone()
    if row and row[0] == posts and row[1] == days:
        return row[2], dict(
            zip(("seconds", "daily_rows", "rollup_rows", "bytes"), row[3:], strict=True)
        )
    last_day = timezone.localdate()
    log(f"  seeding {posts:,} posts x {days} days of history (once; reused by later runs) ...")
    facts = seed(posts, days, last_day, log)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {SEED_TABLE}")
        cursor.execute(
            f"INSERT INTO {SEED_TABLE} VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [posts, days, last_day, *facts.values()],
        )
    return last_day, facts


def seed(posts, days, last_day, log):
    """Empty the history tables and fill them; secondary indexes are built after the rows."""
    from django.db import connection

    from impressions.models import (
        DailyImpressions,
        OpenDailyImpressions,
        OpenDayLeaders,
        PeriodImpressions,
    )

    started = time.perf_counter()
    models = (DailyImpressions, OpenDailyImpressions, PeriodImpressions)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(HISTORY_TABLES)}")
    with connection.schema_editor() as editor:
        for model in models:
            for index in model._meta.indexes:
                editor.remove_index(model, index)
    days_of = {"last_day": last_day, "posts": posts}
    steps = [
        (
            "daily rows of the ended days",
            SEED_DAYS % {"table": "impressions_daily"},
            {**days_of, "first": 1, "last": days - 1},
        ),
        (
            "today's rows (open)",
            SEED_DAYS % {"table": "impressions_daily_open"},
            {**days_of, "first": 0, "last": 0},
        ),
        ("today's leaders", SEED_LEADERS, {"leaders": OpenDayLeaders.LEADERS}),
        ("week and month rollups", SEED_ROLLUPS, None),
        ("site totals", SEED_SITE, None),
        ("rolled through yesterday", SEED_ROLLED_THROUGH, {"last_day": last_day}),
    ]
    with connection.cursor() as cursor:
        for name, sql, params in steps:
            step = time.perf_counter()
            cursor.execute(sql, params)
            log(f"    {name}: {cursor.rowcount:,} rows in {time.perf_counter() - step:.0f} s")
    step = time.perf_counter()
    with connection.schema_editor() as editor:
        for model in models:
            for index in model._meta.indexes:
                editor.add_index(model, index)
    log(f"    indexes: {time.perf_counter() - step:.0f} s")
    with connection.cursor() as cursor:
        for table in HISTORY_TABLES:
            cursor.execute(f"VACUUM ANALYZE {table}")
        cursor.execute(
            "SELECT (SELECT count(*) FROM impressions_daily)"
            " + (SELECT count(*) FROM impressions_daily_open)"
        )
        daily_rows = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM impressions_period")
        rollup_rows = cursor.fetchone()[0]
        cursor.execute(
            "SELECT " + " + ".join(f"pg_total_relation_size('{t}')" for t in HISTORY_TABLES)
        )
        size = cursor.fetchone()[0]
    seconds = time.perf_counter() - started
    log(f"  seeded in {seconds:.0f} s: {daily_rows:,} daily rows, {size / 2**30:.1f} GiB")
    return {"seconds": seconds, "daily_rows": daily_rows, "rollup_rows": rollup_rows, "bytes": size}


def pages(top_post_id):
    """(name, URL) of what is timed: the dashboard at each range, a post page, a CSV."""
    return [
        ("dashboard, default (30 days)", "/admin/impressions/dashboard/"),
        ("dashboard, 7 days", "/admin/impressions/dashboard/?days=7"),
        ("dashboard, 90 days", "/admin/impressions/dashboard/?days=90"),
        ("post change page with its chart", f"/admin/casusult/post/{top_post_id}/change/"),
        ("CSV of the top posts, 30 days", "/admin/impressions/dashboard/csv/?days=30"),
    ]


def run(options, redis_client, log=print):
    """Time each page `options.dashboard_requests` times; returns (markdown, figures)."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from impressions import stats

    last_day, facts = ensure_history(log=log)
    # The seed ends on the day it ran: the dashboard's "today" is that day in every later run.
    original_today = stats.today
    stats.today = lambda: last_day
    try:
        user, _ = get_user_model().objects.get_or_create(
            username="bench-staff", defaults={"is_staff": True, "is_superuser": True}
        )
        client = Client(HTTP_HOST="localhost")
        client.force_login(user)
        (top_id, _), *_ = stats.top_posts(last_day - timedelta(days=29), last_day, 1)
        rows, figures = [], {}
        for name, url in pages(top_id):
            for _ in range(WARMUP):
                client.get(url)
            times = []
            for _ in range(options.dashboard_requests):
                with CaptureQueriesContext(connection) as queries:
                    start = time.perf_counter()
                    response = client.get(url)
                    times.append(time.perf_counter() - start)
                if response.status_code != 200:
                    raise RuntimeError(f"{url} answered {response.status_code}")
            rows.append(
                [
                    name,
                    format_seconds(median(times)),
                    format_seconds(percentile(times, 90)),
                    str(len(queries.captured_queries)),
                ]
            )
            figures[name] = (median(times), len(queries.captured_queries))
            log(f"  {name}: {median(times) * 1e3:.1f} ms median, {len(queries)} queries")
    finally:
        stats.today = original_today
    body = (
        f"History: {facts['daily_rows']:,} daily rows ({HISTORY_POSTS:,} posts x {HISTORY_DAYS}"
        f" days, every post every day), {facts['rollup_rows']:,} week/month rollup rows,"
        f" {facts['bytes'] / 2**30:.1f} GiB with indexes; seeded once in {facts['seconds']:.0f} s"
        f" and reused. Table of {options.posts:,} posts. Each page requested"
        f" {options.dashboard_requests} times (after {WARMUP} warm-ups) through Django's test"
        " client as a superuser, the Redis buffer panel included.\n\n"
        + markdown_table(["page", "median", "p90", "SQL queries"], rows)
    )
    return body, figures
