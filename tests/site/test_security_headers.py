"""Content-Security-Policy and Permissions-Policy on every response, the same in production.

The browser suite (test_browser_pages.py) shows that every page works under them; these tests pin
what the headers say (test_prod_settings.py: production has the same).
"""

import re

import pytest

from casusult.security import permissions_policy_header
from tests.factories import make_posts

pytestmark = pytest.mark.django_db

STRICT = {
    "default-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
    "img-src": "'self'",
}


def directives(header):
    return dict(part.strip().split(" ", 1) for part in header.split(";"))


@pytest.mark.parametrize(
    ("path", "status"),
    [("/", 200), ("/?page=2", 400), ("/api/timeline/", 200), ("/accounts/login/", 200)],
)
def test_every_response_has_a_strict_policy(client, path, status):
    make_posts(2)
    response = client.get(path)
    assert response.status_code == status
    policy = directives(response["Content-Security-Policy"])
    for directive, value in STRICT.items():
        assert policy[directive] == value
    for directive in ("script-src", "style-src"):
        assert "unsafe-inline" not in policy[directive]
        assert "unsafe-eval" not in policy[directive]
    assert "camera=()" in response["Permissions-Policy"]
    assert "geolocation=()" in response["Permissions-Policy"]


def test_the_admin_scripts_carry_this_responses_nonce(admin_client):
    response = admin_client.get("/admin/casusult/post/1/change/", follow=True)
    html = response.content.decode()
    nonce = re.search(r"'nonce-([^']+)'", response["Content-Security-Policy"]).group(1)
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts
    for tag in scripts:
        assert f'nonce="{nonce}"' in tag, tag
    assert "style=" not in html.split("<body", 1)[1]
    again = admin_client.get("/admin/")
    assert nonce not in again["Content-Security-Policy"]  # a new one for each response


def test_permissions_policy_header_format():
    policy = {"camera": [], "geolocation": ["self"], "fullscreen": ["self", "https://x.example"]}
    assert permissions_policy_header(policy) == (
        'camera=(), geolocation=(self), fullscreen=(self "https://x.example")'
    )
    assert permissions_policy_header({"autoplay": ["*"]}) == "autoplay=*"


def test_in_development_only_djangos_debug_pages_go_without_the_policy(manage):
    """settings.dev: the technical 404 (inline styles without a nonce) stays readable."""
    script = (
        "from django.test import Client; c = Client(HTTP_HOST='localhost');"
        " missing = c.get('/no-such-page/'); login = c.get('/accounts/login/');"
        " print(missing.status_code, login.status_code);"
        " print(missing.get('Content-Security-Policy'));"
        " print(login.get('Content-Security-Policy'))"
    )
    env = {"DJANGO_SETTINGS_MODULE": "settings.dev", "DATABASE_URL": "sqlite:///:memory:"}
    result = manage("shell", "-c", script, env=env)
    assert result.returncode == 0, result.stderr
    statuses, debug_404, login = result.stdout.strip().splitlines()[-3:]
    assert statuses == "404 200"
    assert debug_404 == "None"
    assert "script-src 'self'" in login  # the policy, on every other page
