"""The counted model in the shapes real projects give it: hidden rows, keys not named `id`,
small and negative keys, a proxy, a database default, an unmanaged table in another schema, a
view. Counted exactly, through the flush (both paths), the history and the dashboard, on real
PostgreSQL and Redis; or refused at start-up (tests/impressions/test_settings_unit.py)."""

import pytest
from django.contrib import admin
from django.core.checks import run_checks
from django.db import connection
from django.test import override_settings
from django.urls import path, reverse

from impressions import stats
from impressions.admin import PendingImpressionsAdminMixin
from impressions.checks import check_counted_table
from impressions.flush import flush_pending
from impressions.recorder import pending_counts, record_impressions
from tests.factories import make_user

from .countedapp.models import (
    Article,
    ArticleView,
    Badge,
    Entry,
    Feature,
    FeaturedArticle,
    Listing,
    Offer,
    SchemaPost,
    Sensor,
    Story,
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


def test_counts_of_deleted_rows_are_logged_as_the_counted_model_s(
    standalone_buffer, sql_path, caplog
):
    kept, deleted = Entry.objects.create(title="kept"), Entry.objects.create(title="gone")
    with counting("countedapp.Entry", "hits"):
        visit(make_user("alice"), [kept, deleted])
        visit(make_user("bob"), [deleted])
        deleted.delete()
        report = flush_pending()
        logged = caplog.messages  # formatted while the setting holds
    assert (report.posts_dropped, report.impressions_dropped) == (1, 2)
    # It said "posts" whatever the model.
    assert (
        "dropped 2 impressions of 1 entry no longer in the database (countedapp.Entry): the rows"
        " were deleted after their views; no action is needed"
    ) in logged  # before: no model, nor whether to act


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


def test_negative_keys(standalone_buffer, sql_path, admin_client):
    sensors = Sensor.objects.bulk_create(Sensor(number=n) for n in (-1500, -2, 0, 7, 1200))
    with counting("countedapp.Sensor", "reads"):
        visit(make_user("alice"), sensors)
        visit(make_user("bob"), sensors[:2])
        expected = {-1500: 2, -2: 2, 0: 1, 7: 1, 1200: 1}
        assert pending_counts(expected) == expected
        report = flush_pending(batch_size=2)
        # The change page's CSV link of a sensor names its id: -2.
        csv = admin_client.get(reverse("admin:impressions_dashboard_csv") + "?post=-2&days=7")
    assert (report.posts_updated, report.impressions_applied) == (5, 7)
    assert dict(Sensor.objects.values_list("number", "reads")) == expected
    assert history_sums(expected) == expected
    assert csv.status_code == 200, csv.content
    assert csv.content.decode().splitlines()[-1] == f"-2,{stats.today()},2"


def test_a_proxy_as_the_counted_model(standalone_buffer, sql_path):
    first, second = Article.objects.bulk_create([Article(title="one"), Article(title="two")])
    proxied = FeaturedArticle.objects.get(pk=first.pk)
    with counting("countedapp.FeaturedArticle", "views"):
        visit(make_user("alice"), [proxied])
        # The concrete model's instances: the same rows, the same ids.
        visit(make_user("bob"), [first, second])
        report = flush_pending()
    assert report.impressions_applied == 3
    assert dict(Article.objects.values_list("id", "views")) == {first.pk: 2, second.pk: 1}


class ArticleAdmin(PendingImpressionsAdminMixin, admin.ModelAdmin):
    """An adopter's admin of one of the models that share the counted table."""


class ArticleListAdmin(PendingImpressionsAdminMixin, admin.ModelAdmin):
    list_display = ["title", "views", "pending_impressions"]


articles_site = admin.AdminSite(name="articlesadmin")
articles_site.register(Article, ArticleListAdmin)
urlpatterns = [path("articles-admin/", articles_site.urls)]


def test_the_list_s_note_names_the_columns_it_shows(superuser_client, standalone_buffer):
    """The note over the list named "pending" and "impressions": this model's count is "Views"."""
    Article.objects.create(title="one")
    with counting("countedapp.Article", "views"), override_settings(ROOT_URLCONF=__name__):
        html = superuser_client.get("/articles-admin/countedapp/article/").content.decode()
    assert ">Views</a>" in html and ">Pending (Redis)</" in html  # the headers
    assert (
        '"Pending (Redis)" is still in Redis (live) and reaches "Views" with the next flush.'
        in html
    )


@pytest.mark.parametrize(
    ("counted", "field", "administered"),
    [
        # A proxy counted, the concrete model in the admin; and the other way round.
        ("countedapp.FeaturedArticle", "views", Article),
        ("countedapp.Article", "views", FeaturedArticle),
        # A multi-table parent counted, a child in the admin: the child's form has the field.
        ("countedapp.Listing", "listed_views", Story),
    ],
)
def test_every_admin_of_the_counted_table_leaves_the_count_alone(
    rf, standalone_buffer, counted, field, administered
):
    """An admin save of a row read before a flush must not put the older count back."""
    obj = administered.objects.create()
    model_admin = ArticleAdmin(administered, admin.site)
    request = rf.post("/")
    with counting(counted, field):
        assert field in model_admin.get_readonly_fields(request, obj)
        loaded = administered.objects.get(pk=obj.pk)  # the admin reads the row...
        record_impressions("u:1", [obj.pk])
        flush_pending()  # ...a flush commits...
        model_admin.save_model(request, loaded, form=None, change=True)  # ...the admin saves
    obj.refresh_from_db()
    assert getattr(obj, field) == 1


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


def create_view(select):
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE VIEW countedapp_article_view AS {select}")


PLAIN_VIEW = 'SELECT "ArticleId" AS id, "ViewCount" AS views FROM "countedApp_Article"'


def test_an_updatable_view(standalone_buffer, sql_path):
    create_view(PLAIN_VIEW)
    first, second = Article.objects.bulk_create([Article(title="one"), Article(title="two")])
    rows = list(ArticleView.objects.order_by("id"))
    with counting("countedapp.ArticleView", "views"):
        assert database_check_ids() == set()
        visit(make_user("alice"), rows)
        visit(make_user("bob"), rows[:1])
        report = flush_pending()
    assert (report.posts_updated, report.impressions_applied) == (2, 3)
    assert dict(Article.objects.values_list("id", "views")) == {first.pk: 2, second.pk: 1}


def database_check_ids():
    """The impressions ids of the checks that `migrate` and `check --database default` run."""
    return {
        message.id
        for message in run_checks(databases=["default"])
        if message.id.startswith("impressions.")
    }


@pytest.mark.parametrize(
    "select",
    [
        # Not automatically updatable: DISTINCT, an aggregate, a join of two tables.
        f"SELECT DISTINCT * FROM ({PLAIN_VIEW}) AS a",
        'SELECT "ArticleId" AS id, max("ViewCount") AS views FROM "countedApp_Article"'
        ' GROUP BY "ArticleId"',
        # Updatable, but not the count column: an expression.
        'SELECT "ArticleId" AS id, "ViewCount" + 0 AS views FROM "countedApp_Article"',
    ],
)
def test_a_view_the_flush_cannot_update_is_e012_at_start_up(standalone_buffer, select):
    """Else every flush fails on it (the counts wait in Redis): said before, naming the setting."""
    create_view(select)
    with counting("countedapp.ArticleView", "views"):
        assert database_check_ids() == {"impressions.E012"}
        [error] = check_counted_table(databases=["default"])
        # Not the model checks that every command runs: they make no query.
        assert "impressions.E012" not in {message.id for message in run_checks()}
    assert error.msg.startswith("IMPRESSIONS_MODEL='countedapp.ArticleView'")
    assert '"countedapp_article_view"' in error.msg and "IMPRESSIONS_COUNT_FIELD" in error.msg


def test_a_missing_table_is_no_e012(standalone_buffer):
    """Before `migrate` (which runs the checks) creates it, a table is missing: no error yet."""
    with counting("countedapp.SchemaPost", "seen"):
        assert database_check_ids() == set()


def test_a_multi_table_parent_counts_its_children_s_views(standalone_buffer, sql_path):
    """A CMS's base page counted: a page type's instances are its rows (the same ids)."""
    listing = Listing.objects.create(name="a listing")
    story, feature = Story.objects.create(name="a story"), Feature.objects.create(name="a feature")
    with counting("countedapp.Listing", "listed_views"):
        visit(make_user("alice"), [listing, story, feature])
        visit(make_user("bob"), [Listing.objects.get(pk=story.pk), feature])
        report = flush_pending()
    assert (report.posts_updated, report.impressions_applied) == (3, 5)
    counts = dict(Listing.objects.values_list("pk", "listed_views"))
    assert counts == {listing.pk: 1, story.pk: 2, feature.pk: 2}
    assert history_sums(counts) == counts
    assert set(Story.objects.values_list("reads", flat=True)) == {0}


def test_a_multi_table_child_with_a_key_of_its_own_counts_into_its_listing(
    standalone_buffer, sql_path, admin_client
):
    """Its pk is its own number, not the parent's id: counted by pk, its views went to
    whichever listing has that number for its id (here another listing), or were dropped."""
    listing = Listing.objects.create(name="a listing")
    offer = Offer.objects.create(name="an offer", number=listing.pk)  # pk: another listing's id
    assert (offer.pk, offer.listing_ptr_id) == (listing.pk, listing.pk + 1)
    with counting("countedapp.Listing", "listed_views"):
        visit(make_user("alice"), [offer])
        visit(make_user("bob"), [Offer.objects.get(pk=offer.pk)])
        assert pending_counts([listing.pk, offer.listing_ptr_id]) == {
            listing.pk: 0,
            offer.listing_ptr_id: 2,
        }
        report = flush_pending()
    assert (report.posts_updated, report.impressions_applied) == (1, 2)
    counts = dict(Listing.objects.values_list("pk", "listed_views"))
    assert counts == {listing.pk: 0, offer.listing_ptr_id: 2}


def test_the_pending_column_of_a_child_with_a_key_of_its_own(rf, standalone_buffer, admin_user):
    listing = Listing.objects.create(name="a listing")
    offer = Offer.objects.create(name="an offer", number=listing.pk)
    request = rf.get("/")
    request.user = admin_user
    with counting("countedapp.Listing", "listed_views"):
        record_impressions("u:1", [offer.listing_ptr_id])  # pending for the listing it is
        changelist = ArticleAdmin(Offer, admin.site).get_changelist_instance(request)
    assert [offer.pending_impressions_value for offer in changelist.result_list] == [1]


def test_a_refused_e012_query_leaves_the_caller_s_transaction_usable(standalone_buffer):
    """A database user that may not use the counted table's schema: no E012 (the flush says what
    it finds), and the transaction the checks ran in still works."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE SCHEMA content")  # all of it rolled back with the test
        cursor.execute("CREATE ROLE impressions_e012_probe")
        cursor.execute("SET LOCAL ROLE impressions_e012_probe")
    with counting("countedapp.SchemaPost", "seen"):
        assert check_counted_table(databases=["default"]) == []
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
