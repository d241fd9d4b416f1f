"""The queues app in a project's language: its words are extractable (makemessages in the app's
directory), and its pages hold under LocaleMiddleware choosing a language per request."""

import pytest

from tests.translation import make_messages

LOCALE_MIDDLEWARE = "django.middleware.locale.LocaleMiddleware"


def test_makemessages_extracts_the_apps_words(tmp_path):
    extracted = make_messages("queues", tmp_path)
    assert "Queue status" in extracted  # the page's title, gettext()
    assert "queue status" in extracted  # the model's verbose_name, gettext_lazy()
    assert "RQ dashboard" in extracted  # the breadcrumbs of the django-rq pages
    assert "Unavailable: %(error)s" in extracted  # a {% blocktranslate %}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "home"), [("de", "Start"), ("fr", "Accueil"), ("ja", "ホーム")]
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
