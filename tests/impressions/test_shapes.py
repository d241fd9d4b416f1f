"""The counted model in the shapes real projects give it: hidden rows, keys not named `id`,
small and negative keys, a proxy, a database default, an unmanaged table in another schema, a
view. Counted exactly, through the flush (both paths), the history and the dashboard, on real
PostgreSQL and Redis; or refused at start-up (tests/impressions/test_settings_unit.py)."""

import pytest
from django.db import connection
from django.test import override_settings
from django.urls import reverse

from impressions.flush import flush_pending
from tests.factories import make_user

from .countedapp.models import (
    Article,
    ArticleView,
    Badge,
    Entry,
    SchemaPost,
)
from .history_check import history_sums
from .test_reuse import visit

pytestmark = pytest.mark.django_db


def counting(model, field):
    return override_settings(IMPRESSIONS_MODEL=model, IMPRESSIONS_COUNT_FIELD=field)


def test_hidden_rows_are_counted(standalone_buffer, sql_path):
    shown = Entry.objects.create(title="shown")
    draft = Entry.objects.create(title="draft", published=False)
    assert list(Entry.objects.all()) == [shown]
    with counting("countedapp.Entry", "hits"):
        visit(make_user("alice"), [shown, draft])
        visit(make_user("bob"), [draft])
        report = flush_pending()
    assert (report.posts_updated, report.impressions_applied) == (2, 3)
    assert report.posts_dropped == 0
    assert dict(Entry.everything.values_list("entry_no", "hits")) == {shown.pk: 1, draft.pk: 2}
    assert history_sums([shown.pk, draft.pk]) == {shown.pk: 1, draft.pk: 2}


def test_the_dashboard_names_hidden_rows(standalone_buffer, admin_client):
    shown = Entry.objects.create(title="shown")
    draft = Entry.objects.create(title="draft", published=False)
    with counting("countedapp.Entry", "hits"):
        visit(make_user("alice"), [shown, draft])
        flush_pending()
        page = admin_client.get(reverse("admin:impressions_dashboard_changelist")).content.decode()
        ranked = admin_client.get(reverse("admin:impressions_dashboard_objects")).content.decode()
        csv = admin_client.get(reverse("admin:impressions_objects_csv"))
        csv = b"".join(csv.streaming_content).decode()
    # A draft is no deleted object: named in the top lists, the ranking and its CSV.
    assert "(deleted)" not in page and "(deleted)" not in ranked
    assert ">draft<" in page and ">draft<" in ranked
    assert f",{draft.pk},draft,1" in csv


def test_a_small_auto_key_and_a_database_default(standalone_buffer, sql_path):
    first, second = Badge.objects.create(), Badge.objects.create()
    with counting("countedapp.Badge", "shown"):
        visit(make_user("alice"), [first, second])
        visit(make_user("bob"), [first])
        report = flush_pending()
    assert (report.posts_updated, report.impressions_applied) == (2, 3)
    assert dict(Badge.objects.values_list("id", "shown")) == {first.pk: 2, second.pk: 1}


def test_an_unmanaged_table_in_another_schema(standalone_buffer, sql_path):
    with connection.cursor() as cursor:
        cursor.execute("CREATE SCHEMA content")
    with connection.schema_editor() as editor:
        editor.create_model(SchemaPost)
    first, second = SchemaPost.objects.create(), SchemaPost.objects.create()
    with counting("countedapp.SchemaPost", "seen"):
        visit(make_user("alice"), [first, second])
        visit(make_user("bob"), [first])
        report = flush_pending()
    assert (report.posts_updated, report.impressions_applied) == (2, 3)
    assert dict(SchemaPost.objects.values_list("id", "seen")) == {first.pk: 2, second.pk: 1}


def test_an_updatable_view(standalone_buffer, sql_path):
    with connection.cursor() as cursor:
        cursor.execute(
            'CREATE VIEW countedapp_article_view AS SELECT "ArticleId" AS id, "ViewCount" AS views'
            ' FROM "countedApp_Article"'
        )
    first, second = Article.objects.bulk_create([Article(title="one"), Article(title="two")])
    rows = list(ArticleView.objects.order_by("id"))
    with counting("countedapp.ArticleView", "views"):
        visit(make_user("alice"), rows)
        visit(make_user("bob"), rows[:1])
        report = flush_pending()
    assert (report.posts_updated, report.impressions_applied) == (2, 3)
    assert dict(Article.objects.values_list("id", "views")) == {first.pk: 2, second.pk: 1}
