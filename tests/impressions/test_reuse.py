"""Reuse: with IMPRESSIONS_MODEL and IMPRESSIONS_COUNT_FIELD pointed at another app's model, that
model's table is counted and flushed exactly, on real PostgreSQL and real Redis."""

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory, override_settings
from django.urls import reverse

import impressions
from casusult.models import Post
from impressions import dashboard, stats
from impressions.exceptions import DatabaseUnavailable
from impressions.flush import flush_pending
from impressions.recorder import pending_counts, record_impressions
from tests.factories import make_posts, make_user

from .countedapp.models import Article, Feature, Listing, Story
from .history_check import history_sums

pytestmark = pytest.mark.django_db


@pytest.fixture
def counting_articles(buffer):
    """The buffer (standalone and cluster), counting countedapp.Article.views instead of posts."""
    with override_settings(IMPRESSIONS_MODEL="countedapp.Article", IMPRESSIONS_COUNT_FIELD="views"):
        yield buffer


def visit(viewer, articles):
    """One page served to `viewer` (a user, or a session of an anonymous visitor)."""
    request = RequestFactory().get("/articles/")
    if isinstance(viewer, SessionStore):
        request.user, request.session = AnonymousUser(), viewer
    else:
        request.user, request.session = viewer, SessionStore()
    impressions.record(request, articles)


def test_another_apps_model_is_counted_and_flushed_exactly(counting_articles, sql_path):
    posts = make_posts(5)
    # Articles with the posts' ids: counts that went to the posts' table would show there.
    a1, a2, a3, a4, gone = Article.objects.bulk_create(Article(id=post.id) for post in posts)
    alice, bob, anonymous = make_user("alice"), make_user("bob"), SessionStore()

    visit(alice, [a1, a2, a3])
    visit(alice, [a1, a2, a3])  # a reload inside the window: nothing more
    visit(bob, [a1, a2, gone])
    visit(anonymous, [a1])
    visit(anonymous, [a1])  # the same visitor's session again: nothing more
    expected = {a1.id: 3, a2.id: 2, a3.id: 1, a4.id: 0}
    assert impressions.pending_counts([*expected, gone.id]) == {**expected, gone.id: 1}
    gone.delete()

    report = flush_pending(batch_size=2)

    assert (report.posts_updated, report.impressions_applied) == (3, 6)
    assert (report.posts_dropped, report.impressions_dropped) == (1, 1)
    assert dict(Article.objects.values_list("id", "views")) == expected
    assert not Post.objects.filter(impressions__gt=0).exists()
    assert impressions.pending_counts(expected) == dict.fromkeys(expected, 0)
    assert flush_pending().impressions_applied == 0
    assert dict(Article.objects.values_list("id", "views")) == expected
    # The history is of the counted model's ids; the deleted article's count is not in it.
    assert history_sums([*expected, gone.id]) == {**expected, gone.id: 0}


def test_a_nullable_count_field_is_counted_from_null(standalone_buffer, sql_path):
    """NULL + n is NULL in SQL: the flush must start a NULL count at 0, not leave it NULL while
    the history gets the impressions."""
    fresh, counted = Article.objects.bulk_create([Article(), Article(reach=5)])
    with override_settings(IMPRESSIONS_MODEL="countedapp.Article", IMPRESSIONS_COUNT_FIELD="reach"):
        # The admin's change page shows 0 in the database, not "None", before the first flush.
        assert dashboard.object_history(fresh, stats.today())["impressions_flushed"] == 0
        visit(make_user("alice"), [fresh, counted])
        report = flush_pending()
    assert (report.posts_updated, report.impressions_applied) == (2, 2)
    assert dict(Article.objects.values_list("id", "reach")) == {fresh.id: 1, counted.id: 6}
    assert history_sums([fresh.id, counted.id]) == {fresh.id: 1, counted.id: 1}


def test_a_count_past_a_32_bit_column_fails_the_flush_and_keeps_the_counts(standalone_buffer):
    """What impressions.W008 warns of, on PostgreSQL: the batch is refused at every flush (its
    other objects' counts wait with it) until the column is widened; nothing is lost."""
    with override_settings(
        IMPRESSIONS_MODEL="countedapp.Article", IMPRESSIONS_COUNT_FIELD="shares"
    ):
        full, other = Article.objects.create(shares=2**31 - 2), Article.objects.create()
        for viewer in ("u:1", "u:2"):
            record_impressions(viewer, [full.id, other.id])
        for _ in range(2):
            with pytest.raises(DatabaseUnavailable, match="out of range"):
                flush_pending()
        assert pending_counts([full.id, other.id]) == {full.id: 2, other.id: 2}
        other.refresh_from_db()
        assert other.shares == 0
        Article.objects.filter(id=full.id).update(shares=0)  # as a wider column would take it
        flush_pending()
        shares = Article.objects.filter(id__in=[full.id, other.id]).values_list("shares", flat=True)
        assert sorted(shares) == [2, 2]


def test_a_multi_table_child_is_counted_into_its_own_table(standalone_buffer, sql_path):
    """A CMS's page type: the child's key is its parent's id, the count field in the child's
    table; the parent's own rows and fields are left alone."""
    Listing.objects.create(name="not a story")
    first, second = Story.objects.create(name="one"), Story.objects.create(name="two")
    with override_settings(IMPRESSIONS_MODEL="countedapp.Story", IMPRESSIONS_COUNT_FIELD="reads"):
        visit(make_user("alice"), [first, second])
        visit(make_user("bob"), [first])
        report = flush_pending()
    assert (report.posts_updated, report.impressions_applied) == (2, 3)
    assert dict(Story.objects.values_list("pk", "reads")) == {first.pk: 2, second.pk: 1}
    assert set(Listing.objects.values_list("listed_views", flat=True)) == {0}


def test_a_multi_table_grandchild_is_counted_into_its_own_table(standalone_buffer, sql_path):
    """A page type of a page type: its key links to its parent's, a link in turn."""
    Story.objects.create(name="not featured")
    first, second = Feature.objects.create(name="one"), Feature.objects.create(name="two")
    field = "featured_reads"
    with override_settings(IMPRESSIONS_MODEL="countedapp.Feature", IMPRESSIONS_COUNT_FIELD=field):
        visit(make_user("alice"), [first, second])
        visit(make_user("bob"), [first])
        report = flush_pending()
    assert (report.posts_updated, report.impressions_applied) == (2, 3)
    assert dict(Feature.objects.values_list("pk", field)) == {first.pk: 2, second.pk: 1}
    assert set(Story.objects.values_list("reads", flat=True)) == {0}


def test_the_admin_pages_name_the_counted_model(counting_articles, admin_client):
    first, second = Article.objects.bulk_create([Article(title="one"), Article(title="two")])
    visit(make_user("alice"), [first, second])
    flush_pending()
    dashboard = admin_client.get(reverse("admin:impressions_dashboard_changelist")).content
    assert b"Top articles" in dashboard and b"Every article by impressions" in dashboard
    ranked = admin_client.get(reverse("admin:impressions_dashboard_objects")).content
    assert b"Articles by impressions" in ranked and b"2 articles had impressions" in ranked
    ledger = admin_client.get(reverse("admin:impressions_flush_changelist")).content
    assert b"Articles updated" in ledger
