"""The load test's data in the real database: posts topped up in one INSERT, idempotently."""

import pytest
from django.db.models import Count

from casusult.models import Post
from loadtest.seed import ensure_posts
from tests.factories import make_user

# VACUUM cannot run inside the transaction a plain django_db test is wrapped in.
pytestmark = pytest.mark.django_db(transaction=True)


def test_posts_are_topped_up_to_the_count_and_a_rerun_adds_nothing():
    authors = [make_user(f"seed-author-{n}").pk for n in range(3)]
    assert ensure_posts(300, authors) == 300
    assert ensure_posts(300, authors) == 0
    assert ensure_posts(350, authors) == 50
    assert Post.objects.count() == 350
    per_author = dict(
        Post.objects.values("author_id").annotate(n=Count("id")).values_list("author_id", "n")
    )
    assert sorted(per_author.values()) == [116, 117, 117]
    assert set(per_author) == set(authors)
    newest = Post.objects.first()  # the timeline's order: newest first
    assert newest.body.startswith("Demo post #1: ")
    assert newest.impressions == 0


def test_a_site_with_more_posts_than_asked_is_left_alone():
    author = make_user("seed-author").pk
    ensure_posts(30, [author])
    assert ensure_posts(10, [author]) == 0
    assert Post.objects.count() == 30
