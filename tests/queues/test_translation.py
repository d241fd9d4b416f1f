"""The queues app in a project's language: its words are extractable (makemessages in the app's
directory), and its pages hold under LocaleMiddleware choosing a language per request."""

import pytest

from tests.translation import compile_catalogue, make_messages

LOCALE_MIDDLEWARE = "django.middleware.locale.LocaleMiddleware"


def test_makemessages_extracts_the_apps_words(tmp_path):
    extracted = make_messages("queues", tmp_path)
    assert "Queue status" in extracted  # the page's title, gettext()
    assert "queue status" in extracted  # the model's verbose_name, gettext_lazy()
    assert "RQ dashboard" in extracted  # the breadcrumbs of the django-rq pages
    assert "Unavailable: %(error)s" in extracted  # a {% blocktranslate %}
    assert (
        "%(status)s jobs" in extracted
    )  # a crumb of django-rq's pages, {% blocktranslate asvar %}
    assert "Failed jobs" in extracted  # a crumb, _("…") in an {% include … with %}
    assert "Select this job for an action" in extracted  # a checkbox's name, for rq_dashboard.js
    assert extracted.keys() >= {
        "Stop is disabled here: the RQ worker runs each task in its own"
        " process, with no work-horse process to kill. A task ends on its own, or at the backend's"
        " JOB_TIMEOUT."
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "home"),
    [("de", "Start"), ("fr", "Accueil"), ("ja", "ホーム")],
    ids=["de", "fr", "ja"],
)
def test_the_status_page_holds_in_each_requests_language(admin_client, settings, language, home):
    middleware = list(settings.MIDDLEWARE)
    middleware.insert(
        middleware.index("django.middleware.common.CommonMiddleware"), LOCALE_MIDDLEWARE
    )
    settings.MIDDLEWARE = middleware
    response = admin_client.get("/admin/queues/queuestatus/", headers={"accept-language": language})
    assert response.status_code == 200
    assert response.headers["Content-Language"] == language
    assert f'<a href="/admin/">{home}</a>' in response.text


@pytest.mark.django_db
def test_a_projects_catalogue_translates_the_rq_pages_crumbs(
    admin_client, settings, rq_url, tmp_path
):
    # Made up for the test, as an adopter's own LOCALE_PATHS catalogue would be.
    compile_catalogue(
        tmp_path,
        "de",
        {
            "RQ dashboard": "RQ-Übersicht",
            "Failed jobs": "Fehlgeschlagene Jobs",
            "%(status)s jobs": "Jobs: %(status)s",
            "Select all jobs on this page for an action": "Alle Jobs dieser Seite auswählen",
            "Select this job for an action": "Diesen Job auswählen",
        },
    )
    settings.LOCALE_PATHS = [tmp_path]
    settings.LANGUAGE_CODE = "de"
    failed = admin_client.get("/admin/rq/queues/0/failed/")
    assert failed.status_code == 200
    assert '<li aria-current="page">Fehlgeschlagene Jobs</li>' in failed.text  # _("…")
    assert ">RQ-Übersicht</a></li>" in failed.text  # {% translate %}
    # The names rq_dashboard.js gives the checkboxes for a screen reader: written in the script,
    # they stayed English on a page in German; the page gives them, translated.
    assert 'data-select-all="Alle Jobs dieser Seite auswählen"' in failed.text
    assert 'data-select-one="Diesen Job auswählen"' in failed.text
    queued = admin_client.get("/admin/rq/queues/0/")
    assert queued.status_code == 200
    assert '<li aria-current="page">Jobs: Queued</li>' in queued.text  # {% blocktranslate asvar %}
