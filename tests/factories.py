"""Small helpers to make users and posts in tests."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone

from casusult.models import Post


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
