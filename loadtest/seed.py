"""The load test's data: demo users who can log in, and posts enough to look like a grown site."""

import time

from django.contrib.auth import get_user_model
from django.db import connection

from casusult.demo import DEMO_LINES, demo_username
from casusult.models import Post


def demo_user_ids(users):
    """The ids of demo1..demoN, in that order (they must exist: seed_demo makes them)."""
    names = [demo_username(number) for number in range(1, users + 1)]
    return list(
        get_user_model()
        .objects.filter(username__in=names)
        .order_by("id")
        .values_list("id", flat=True)
    )


def insert_posts_into():
    """`INSERT INTO <posts> (author, body, created_at, impressions)`, quoted, to follow with a
    SELECT of those four columns: posts with no model instance each."""
    quote = connection.ops.quote_name
    columns = ", ".join(
        quote(Post._meta.get_field(name).column)
        for name in ("author", "body", "created_at", "impressions")
    )
    return f"INSERT INTO {quote(Post._meta.db_table)} ({columns})"


def ensure_posts(count, author_ids):
    """At least `count` posts in the table; the missing ones in one INSERT … SELECT generate_series.

    Idempotent: a database seeded before is reused as it is, or topped up. Returns how many it
    inserted.
    """
    existing = Post.objects.count()
    missing = count - existing
    if missing <= 0:
        return 0
    if not author_ids:
        raise ValueError("posts need at least one author")
    with connection.cursor() as cursor:
        # The authors and the demo lines in turn; one post a minute back in time from now.
        cursor.execute(
            insert_posts_into() + " SELECT (%s::bigint[])[1 + mod(g, %s)],"
            " 'Demo post #' || g || ': ' || (%s::text[])[1 + mod(g, %s)],"
            " now() - make_interval(mins => g), 0"
            " FROM generate_series(%s, %s) AS g",
            [author_ids, len(author_ids), DEMO_LINES, len(DEMO_LINES), existing + 1, count],
        )
        # Fresh statistics for the timeline query, and a visibility map for index-only scans.
        cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(Post._meta.db_table)}")
    return missing


def demo_users_command(users):
    """The manage.py command that makes demo1..demoN, for the stack to run with the servers'
    settings (their password hashers): `Stack.prepare(demo_users_command(n))`."""
    return ["seed_demo", "--users", str(users), "--posts", "0"]


def seed_site(users, posts, say=print):
    """At least `posts` posts, by the demo users `demo_users_command(users)` made."""
    started = time.perf_counter()
    inserted = ensure_posts(posts, demo_user_ids(users))
    total = Post.objects.count()
    took = f", {inserted:,} inserted in {time.perf_counter() - started:.1f} s" if inserted else ""
    say(f"data: {users} demo users, {total:,} posts{took}")
