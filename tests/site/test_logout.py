"""/accounts/logout/: a GET asks to confirm with a form (Django's LogoutView alone answers it with
an empty 405), the POST logs out, CSRF-protected; the header's button on every page still works."""

import re

import pytest
from django.test import Client

from tests.factories import make_user

pytestmark = pytest.mark.django_db

LOGOUT = "/accounts/logout/"


@pytest.fixture
def browser():
    """A logged-in client whose POSTs need a CSRF token, as a browser's."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("bob"))
    return client


def logged_in(client):
    return "_auth_user_id" in client.session


def form_token(html):
    """The first CSRF token of a form in `html`."""
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


def test_a_get_asks_to_confirm_in_the_sites_look_and_logs_nobody_out(browser):
    response = browser.get(LOGOUT)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1>Log out?</h1>" in html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert '<form method="post">' in html  # posts to this address, ?next= included
    assert 'name="csrfmiddlewaretoken"' in html
    assert "no-cache" in response["Cache-Control"]
    assert logged_in(browser)


def test_the_confirmation_form_logs_out(browser):
    token = form_token(browser.get(LOGOUT).content.decode())
    response = browser.post(LOGOUT, {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert not logged_in(browser)


def test_next_is_kept_through_the_confirmation(browser):
    url = f"{LOGOUT}?next=/accounts/login/"
    token = form_token(browser.get(url).content.decode())
    response = browser.post(url, {"csrfmiddlewaretoken": token})
    assert response["Location"] == "/accounts/login/"
    assert not logged_in(browser)


def test_a_post_without_a_csrf_token_logs_nobody_out_and_says_so_in_the_sites_look(browser):
    refused = browser.post(LOGOUT)
    assert refused.status_code == 403
    page = refused.content.decode()
    assert "This form was not sent" in page and "Go to the newest posts" in page
    assert logged_in(browser)


def test_the_headers_log_out_button_still_works(browser):
    html = browser.get("/").content.decode()
    form = re.search(r'<form method="post" action="([^"]+)">(.*?)</form>', html)
    assert form.group(1) == LOGOUT
    response = browser.post(LOGOUT, {"csrfmiddlewaretoken": form_token(form.group(2))})
    assert response.status_code == 302
    assert not logged_in(browser)


def test_an_anonymous_get_says_so():
    response = Client().get(LOGOUT)
    assert response.status_code == 200
    assert "<h1>You are not logged in</h1>" in response.content.decode()
