"""Small helpers to make users and posts in tests."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from casusult.models import Post
from loadtest.seed import insert_posts_into


def make_user(username="alice"):
    return get_user_model().objects.create_user(username=username, password="pw-for-tests")


def make_posts(count, author=None, start=None):
    """`count` posts, the first one oldest, one second apart."""
    author = author or make_user("author")
    start = start or timezone.now() - timedelta(days=1)
    return Post.objects.bulk_create(
        Post(author=author, body=f"post {index}", created_at=start + timedelta(seconds=index))
        for index in range(count)
    )


def insert_posts(count, author):
    """`count` posts by `author` (body "x", created now) in one INSERT … SELECT generate_series,
    with no model instance each: for the tests that need tens of thousands. Their ids, in order."""
    with connection.cursor() as cursor:
        cursor.execute(
            insert_posts_into() + " SELECT %s, 'x', now(), 0 FROM generate_series(1, %s)"
            f" RETURNING {connection.ops.quote_name(Post._meta.pk.column)}",
            [author.pk, count],
        )
        return sorted(row[0] for row in cursor.fetchall())
