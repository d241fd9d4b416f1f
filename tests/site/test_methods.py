"""Methods other than GET and HEAD, sent as a browser or script would (CSRF checks enforced, with and
without a token): the read-only pages and API answer 405 with an Allow header, never the CSRF page."""

import pytest
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client

from tests.factories import make_posts

pytestmark = pytest.mark.django_db

UNSAFE = ("post", "put", "patch", "delete", "options", "trace")
API_PATHS = ("/api/timeline/", "/healthz", "/readyz", "/metrics")


def clients():
    """(name, client, headers): no CSRF cookie at all, and a valid cookie and token pair."""
    without = Client(enforce_csrf_checks=True)
    with_token = Client(enforce_csrf_checks=True)
    token = _get_new_csrf_string()
    with_token.cookies["csrftoken"] = token
    return [("no token", without, {}), ("token", with_token, {"HTTP_X_CSRFTOKEN": token})]


@pytest.mark.parametrize("path", API_PATHS)
def test_the_api_and_probes_refuse_other_methods_with_a_json_405(path):
    make_posts(2)
    for name, client, headers in clients():
        for method in UNSAFE:
            response = getattr(client, method)(path, **headers)
            where = f"{method} {path} ({name})"
            assert response.status_code == 405, where
            assert response["Allow"] == "GET, HEAD", where
            assert response["Content-Type"] == "application/json", where
            assert response.json() == {
                "error": f"{method.upper()} is not allowed here: use GET or HEAD"
            }, where


def test_the_html_timeline_refuses_other_methods_with_a_405_in_the_sites_look():
    make_posts(2)
    for name, client, headers in clients():
        for method in UNSAFE:
            response = getattr(client, method)("/", **headers)
            where = f"{method} / ({name})"
            assert response.status_code == 405, where
            assert response["Allow"] == "GET, HEAD", where
            assert response["Content-Type"].startswith("text/html"), where
            html = response.content.decode()
            assert "<h1>This page cannot take that request</h1>" in html, where
            assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html


def test_get_and_head_still_answer():
    make_posts(2)
    client = Client(enforce_csrf_checks=True)
    for path in ("/", *API_PATHS):
        assert client.get(path).status_code == 200, path
        assert client.head(path).status_code == 200, path


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_a_probe_refuses_other_methods_before_the_https_redirect(path, settings):
    settings.SECURE_SSL_REDIRECT = True  # as in production: plain HTTP is redirected
    assert Client().get(path).status_code == 200  # probes answer plain HTTP
    response = Client().post(path)
    assert response.status_code == 405 and response["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_a_probe_s_answer_carries_the_headers_it_needs(path):
    response = Client().get(path)
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert response["Cache-Control"] == "no-store"
