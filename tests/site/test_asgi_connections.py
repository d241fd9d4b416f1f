"""The site's ASGI app with settings.prod: Django runs each request's sync work in a thread of its
own, so a persistent connection (CONN_MAX_AGE) is one per request left open, as Django's docs
warn; under ASGI the site closes each request's connection (DATABASE_CONN_MAX_AGE, 0 there)."""

import secrets
import uuid

import pytest
from django.db import connection

from tests.impressions.support import database_url_for_subprocess
from tests.processes import run_manage, run_python

pytestmark = pytest.mark.django_db(transaction=True)

REQUESTS = 12
# Serves REQUESTS timeline pages through `module`'s application, one after the other, then prints
# how many connections of this process the server holds.
SERVE = """
import asyncio, importlib, time
from asgiref.testing import ApplicationCommunicator

application = importlib.import_module({module!r}).application
from django.conf import settings
from django.db import connections

async def get(path):
    scope = {{"type": "http", "asgi": {{"version": "3.0"}}, "http_version": "1.1",
        "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": b"", "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 1),
        "server": ("testserver", 80), "root_path": ""}}
    app = ApplicationCommunicator(application, scope)
    await app.send_input({{"type": "http.request", "body": b""}})
    start = await app.receive_output(10)
    while (await app.receive_output(10)).get("more_body"):
        pass
    await app.wait(10)  # the handler's end: the response closed, request_finished sent
    return start["status"]

async def main():
    return [await get("/") for _ in range({requests})]

statuses = asyncio.run(main())
# A connection closed by its client leaves pg_stat_activity once its server process has exited:
# a moment later. Those left open stay.
deadline = time.monotonic() + 3
while True:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [{name!r}]
        )
        held = cursor.fetchone()[0]
    if held <= 1 or time.monotonic() > deadline:
        break
    time.sleep(0.1)
print(settings.DATABASES["default"]["CONN_MAX_AGE"], sorted(set(statuses)), held)
"""


@pytest.fixture(scope="module")
def static_root(tmp_path_factory):
    """settings.prod's pages need the manifest of collected static files."""
    root = tmp_path_factory.mktemp("static")
    env = prod_env(database_url_for_subprocess(connection), root)
    result = run_manage("collectstatic", "--noinput", env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return root


def prod_env(database_url, static_root):
    return {
        "DJANGO_SETTINGS_MODULE": "settings.prod",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": database_url,
        "ALLOWED_HOSTS": "testserver",
        "QUEUE_BACKEND": "dummy",
        "SECURE_SSL_REDIRECT": "false",
        "LOG_FORMAT": "plain",
        "DEBUG": None,
        "DATABASE_CONN_MAX_AGE": None,
        "STATIC_ROOT": str(static_root),
    }


def serve(static_root, module, **env):
    name = f"asgi-{uuid.uuid4().hex[:8]}"
    url = f"{database_url_for_subprocess(connection)}?application_name={name}"
    code = SERVE.format(module=module, requests=REQUESTS, name=name)
    result = run_python(code, env={**prod_env(url, static_root), **env}, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    max_age, statuses, held = result.stdout.split(" ", 2)
    return int(max_age), statuses, int(held)


def test_the_asgi_app_closes_each_request_s_connection(static_root):
    max_age, statuses, held = serve(static_root, "casusult.asgi")

    assert statuses == "[200]"
    assert max_age == 0
    assert held <= 1, held  # the count's own connection, not one per request served


def test_the_wsgi_app_keeps_its_threads_connections_and_the_variable_decides(static_root):
    # gunicorn's threads live as long as their process: one kept connection each.
    code = "import casusult.wsgi; from django.conf import settings as s; "
    code += "print(s.DATABASES['default']['CONN_MAX_AGE'])"
    env = prod_env(database_url_for_subprocess(connection), static_root)
    for variable, expected in [(None, 60), ("0", 0), ("120", 120)]:
        result = run_python(code, env={**env, "DATABASE_CONN_MAX_AGE": variable})
        assert result.stdout.strip() == str(expected), result.stderr[-2000:]
    assert serve(static_root, "casusult.asgi", DATABASE_CONN_MAX_AGE="30")[0] == 30
