"""The impressions app in a project's language: its words are extractable (makemessages in the
app's directory), a project's catalogue translates them on the pages (sentences and plural
forms, in templates and in Python), and the pages hold under LANGUAGE_CODE de/fr/ja and under
LocaleMiddleware choosing a language per request, every number in that language's format."""

import re
from datetime import date, timedelta

import pytest
from django.test import override_settings
from django.utils import translation
from django.utils.formats import number_format

from casusult.models import Post
from impressions import charts, stats
from impressions.flush import flush_pending
from impressions.recorder import record_impressions
from tests.factories import make_posts
from tests.translation import REPO, compile_catalogue, make_messages

LANGUAGES = [("de", "Start"), ("fr", "Accueil"), ("ja", "ホーム")]  # Django's own "Home"
LOCALE_MIDDLEWARE = "django.middleware.locale.LocaleMiddleware"
# Nowhere in the app's templates but in a {% translate %} or {% blocktranslate %}: the words
# that are names (of a product, a setting) or symbols.
NOT_WORDS = {"CSV", "Redis", "TASKS"}


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    return make_messages("impressions", tmp_path_factory.mktemp("makemessages"))


def test_makemessages_extracts_the_apps_words_with_their_plurals(extracted):
    # Templates: {% translate %}, {% blocktranslate count %}; Python: gettext, ngettext, lazy.
    assert "Flush now" in extracted
    assert extracted["Last %(days)s day"] == "Last %(days)s days"
    assert extracted["%(count)s impression"] == "%(count)s impressions"
    assert "in the last 7 days" in extracted
    assert "Impressions dashboard" in extracted
    assert "nothing pending" in extracted  # a choice of the ledger's outcome
    assert "flushes" in extracted  # a model's verbose_name_plural
    assert "since must be the ISO time the flush was asked for." in extracted


def visible_words(template):
    """The words of a template a person reads that no translate tag holds."""
    text = re.sub(r"{% comment %}.*?{% endcomment %}", " ", template, flags=re.S)
    text = re.sub(r"{% block bodyclass %}.*?{% endblock %}", " ", text)  # CSS classes
    text = re.sub(r"{% blocktranslate.*?{% endblocktranslate %}", " ", text, flags=re.S)
    text = re.sub(r"{%.*?%}|{{.*?}}", " ", text, flags=re.S)
    text = re.sub(r"<code>.*?</code>", " ", text, flags=re.S)
    text = re.sub(r"<[^>]*>|&\w+;|&#\d+;", " ", text)
    return set(re.findall(r"[A-Za-z]{2,}", text)) - NOT_WORDS


def untranslated_attributes(template):
    """Attributes a person reads (aria-label, title, alt) holding plain English."""
    values = re.findall(r'\s(?:aria-label|title|alt|placeholder)="([^"]*)"', template)
    return [value for value in values if re.search(r"[A-Za-z]", value) and "{" not in value]


def test_no_template_of_the_app_has_a_word_left_unmarked():
    folder = REPO / "impressions" / "templates"
    for template in sorted(folder.rglob("*.html")):
        source = template.read_text()
        assert visible_words(source) == set(), template.name
        assert untranslated_attributes(source) == [], template.name


def test_chart_labels_use_djangos_names_of_days_and_months():
    day = charts.Point(date(2026, 3, 3), date(2026, 3, 3), 1)
    month = charts.Point(date(2026, 3, 1), date(2026, 3, 31), 1)
    assert charts.period_label(day) == "Tue 2026-03-03"
    with translation.override("de"):
        assert charts.period_label(day) == "Di 2026-03-03"
        assert charts.period_label(month) == "Mär 2026"


@pytest.mark.django_db
def test_a_projects_catalogue_translates_the_pages(
    superuser_client, history_rows, standalone_buffer, settings, tmp_path
):
    # Made up for the test, as an adopter's own LOCALE_PATHS catalogue would be.
    compile_catalogue(
        tmp_path,
        "de",
        {
            "Buffer": "Puffer",
            "Impressions dashboard": "Impressions-Übersicht",
            "in the last 7 days": "in den letzten 7 Tagen",
            "impressions": "Impressionen",
            ("Last %(days)s day", "Last %(days)s days"): [
                "Letzter %(days)s Tag",
                "Letzte %(days)s Tage",
            ],
        },
    )
    settings.LOCALE_PATHS = [tmp_path]
    settings.LANGUAGE_CODE = "de"
    settings.USE_THOUSAND_SEPARATOR = True
    post = make_posts(1)[0]
    history_rows(post.id, stats.today(), 3456)

    dashboard = superuser_client.get("/admin/impressions/dashboard/?range=7d").text
    assert "<h2>Puffer</h2>" in dashboard  # {% translate %}
    assert "<title>Impressions-Übersicht" in dashboard  # gettext() in the admin's view
    assert "in den letzten 7 Tagen" in dashboard  # gettext_lazy(), in a {% blocktranslate %}
    change = superuser_client.get(f"/admin/casusult/post/{post.id}/change/").text
    assert "<dt>Letzte 30 Tage</dt>" in change  # {% blocktranslate count %}
    # The CSV stays machine-readable: English headers, plain numbers.
    csv = b"".join(superuser_client.get("/admin/impressions/dashboard/objects/csv/?range=7d"))
    assert csv.decode().splitlines()[0] == "rank,object_id,object,impressions"
    assert csv.decode().splitlines()[1].endswith(",3456")


def pages(post_id):
    return [
        "/admin/impressions/dashboard/?range=7d",
        "/admin/impressions/dashboard/objects/?range=7d",
        f"/admin/casusult/post/{post_id}/change/",
        "/admin/casusult/post/",
        "/admin/impressions/flush/",
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(("language", "home"), LANGUAGES, ids=[code for code, _ in LANGUAGES])
def test_the_pages_hold_in_the_projects_language(
    superuser_client, history_rows, standalone_buffer, language, home
):
    post = make_posts(1)[0]
    history_rows(post.id, stats.today(), 3579)
    with override_settings(LANGUAGE_CODE=language, USE_THOUSAND_SEPARATOR=True):
        for url in pages(post.id):
            response = superuser_client.get(url)
            assert response.status_code == 200, url
            assert f'<a href="/admin/">{home}</a>' in response.text, url
        dashboard = superuser_client.get(pages(post.id)[0]).text
        with translation.override(language):
            total = number_format(3579)
    assert re.search(rf'id="range-total">{re.escape(total)}<', dashboard)
    assert f'<td class="count">{total}</td>' in dashboard


@pytest.mark.django_db
def test_locale_middleware_chooses_each_requests_language(
    superuser_client, history_rows, standalone_buffer, settings
):
    middleware = list(settings.MIDDLEWARE)
    middleware.insert(
        middleware.index("django.middleware.common.CommonMiddleware"), LOCALE_MIDDLEWARE
    )
    settings.MIDDLEWARE = middleware
    settings.USE_THOUSAND_SEPARATOR = True
    post = make_posts(1)[0]
    history_rows(post.id, stats.today() - timedelta(days=1), 3579)
    for language, home in [*LANGUAGES, ("en", "Home")]:
        for url in pages(post.id):
            response = superuser_client.get(url, headers={"accept-language": language})
            assert response.status_code == 200, (language, url)
            assert response.headers["Content-Language"] == language
            assert f'<a href="/admin/">{home}</a>' in response.text, (language, url)
        with translation.override(language):
            total = number_format(3579)
        dashboard = superuser_client.get(pages(post.id)[0], headers={"accept-language": language})
        assert re.search(rf'id="range-total">{re.escape(total)}<', dashboard.text), language


@pytest.mark.django_db
def test_the_dropped_counts_log_line_keeps_plain_numbers_in_any_language(standalone_buffer, caplog):
    # Log lines stay as they are in every language (history.md, languages and number formats):
    # once the numbers formatted in Python followed the locale, a flush under "de" logged "of
    # 1.000 posts", beside "dropped 1000 impressions" in the same line.
    ids = [post.id for post in make_posts(1000)]
    record_impressions("u:1", ids)
    Post.objects.filter(id__in=ids).delete()
    with (
        override_settings(LANGUAGE_CODE="de", USE_THOUSAND_SEPARATOR=True),
        translation.override("de"),
    ):
        assert flush_pending().posts_dropped == 1000
        logged = [message for message in caplog.messages if message.startswith("dropped")]
    assert len(logged) == 1
    assert logged[0].startswith("dropped 1000 impressions of 1000 posts no longer in the database")
