"""Fixtures of the impressions tests: the buffer, a private Redis, staff clients, history rows, Chromium."""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection, connections
from django.test import override_settings

import devservices
from impressions import clocks, ledger, recorder
from impressions.redis_client import get_flush_client
from tests import services
from tests.database import admin_session
from tests.processes import PROJECT_DIR

from .history_rows import add_impressions
from .support import DUMMY_TASKS, PrivateRedis, flush_redis, ping_or_fail, reset_loss_counter


@contextlib.contextmanager
def buffer_at(url):
    """The buffer on the Redis at `url` (its mode detected: INFO cluster), emptied before and
    after; Dummy task backend. Yields the flush client."""
    with override_settings(
        TASKS=DUMMY_TASKS, IMPRESSIONS_REDIS_URL=url, IMPRESSIONS_REDIS_CLUSTER="auto"
    ):
        client = get_flush_client()
        flush_redis(client)  # also clears this process's reload cache
        reset_loss_counter()
        yield client
        flush_redis(get_flush_client())


@pytest.fixture
def standalone_buffer():
    """The standalone Redis of REDIS_URL, emptied before and after the test; Dummy task backend."""
    ping_or_fail(settings.IMPRESSIONS_REDIS_URL)
    with buffer_at(settings.IMPRESSIONS_REDIS_URL) as client:
        yield client


@pytest.fixture
def cluster_buffer(redis_cluster_url):
    """The real 3-node Redis Cluster, detected automatically (INFO cluster)."""
    with buffer_at(redis_cluster_url) as client:
        yield client


@pytest.fixture
def tls_cluster_buffer(redis_tls_cluster_url):
    """The real 3-node Redis Cluster that speaks TLS only, at rediss://localhost:PORT/0 with its
    CA in ?ssl_ca_certs= (as a user points the buffer at ElastiCache Serverless)."""
    with buffer_at(redis_tls_cluster_url) as client:
        yield client


@pytest.fixture(params=["standalone", "cluster"])
def buffer(request):
    """Run the test once on standalone Redis and once on the Redis Cluster."""
    return request.getfixturevalue(f"{request.param}_buffer")


@pytest.fixture
def sqlite_env(standalone_buffer, tmp_path):
    """The environment of a child process on a fresh SQLite file (the database of `make run`,
    tmp_path/db.sqlite3) and the buffer's Redis."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "settings.test",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": settings.IMPRESSIONS_REDIS_URL,
    }


@pytest.fixture
def on_sqlite(sqlite_env):
    """Runs a Python script in a child process of sqlite_env; returns the JSON of its last line."""

    def run(script):
        child = subprocess.run(
            [sys.executable, "-c", script],
            cwd=PROJECT_DIR,
            env=sqlite_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert child.returncode == 0, child.stderr
        return json.loads(child.stdout.strip().splitlines()[-1])

    return run


@pytest.fixture(params=["unnest", "portable"])
def sql_path(request, monkeypatch):
    """Run the test on the flush's PostgreSQL statements, then on the portable path SQLite takes
    (select, update, insert), both here on PostgreSQL."""
    if request.param == "portable":
        monkeypatch.setattr(
            ledger,
            "write_batch_postgresql",
            lambda lines, durable=True: ledger.write_batch_portable(lines),
        )
    return request.param


@pytest.fixture
def private_redis():
    """A redis-server of our own on a free port, so a test may kill it."""
    workdir = tempfile.mkdtemp(prefix="impressions-redis-")
    port = devservices.free_port()
    try:
        process = devservices.start_redis_server(port, workdir)
    except devservices.ServiceUnavailable as error:
        pytest.fail(f"cannot start a private redis-server: {error}")
    server = PrivateRedis(process, f"redis://127.0.0.1:{port}/0")
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def private_cluster():
    """A 3-node Redis Cluster of our own, so that a test may move its slots (and put them back);
    one for the session (started in the background at collection: tests/services.py)."""
    cluster = services.started("private_cluster")
    yield cluster
    cluster.stop()


@pytest.fixture
def private_cluster_buffer(private_cluster):
    """The buffer on `private_cluster`, as on `cluster_buffer`; yields the cluster."""
    with buffer_at(private_cluster.url):
        yield private_cluster


@pytest.fixture
def staff_client(client):
    """A logged-in staff user who is not a superuser and may view the dashboard, nothing else."""
    user = get_user_model().objects.create_user("editor", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    client.force_login(user)
    return client


@pytest.fixture
def superuser_client(client):
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def plain_client(client):
    user = get_user_model().objects.create_user("visitor", password="pw")
    client.force_login(user)
    return client


@pytest.fixture
def history_rows():
    """Add history rows as the flush would: add(object_id, day, count)."""
    return add_impressions


@pytest.fixture
def wednesday():
    """A fixed 'today' in the middle of an ISO week and a month: 2026-11-18."""
    return date(2026, 11, 18)


@pytest.fixture
def chromium(browser):
    """open() -> a context manager giving (page, console errors) in a new context of the module's
    headless Chromium (tests/conftest.py: launched once for the module, not once a test)."""

    @contextlib.contextmanager
    def open_page():
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            page = context.new_page()
            errors = []

            def on_console(message):
                # The browser asks for /favicon.ico by itself; the site has none (not the page's).
                url = message.location.get("url", "")
                if message.type == "error" and not url.endswith("/favicon.ico"):
                    errors.append(f"{message.text} ({url})")

            page.on("console", on_console)
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield page, errors
        finally:
            context.close()

    return open_page


@pytest.fixture(scope="module")
def pgbouncer():
    """A private PgBouncer in transaction mode in front of the tests' PostgreSQL, for the module
    (stopped at its end, so that no server connection of it is left on the test database)."""
    if devservices.pgbouncer_binary() is None:
        pytest.skip("pgbouncer is not installed: `make test` installs Debian's package as root")
    params = settings.DATABASES["default"]
    service = devservices.PgBouncerProcess(
        params["HOST"] or "127.0.0.1", params["PORT"] or 5432, params["USER"] or "postgres"
    )
    try:
        service.start()
    except devservices.ServiceUnavailable as error:
        pytest.fail(f"Cannot start pgbouncer for the tests: {error}")
    yield service
    service.stop()


@pytest.fixture
def through_pgbouncer(pgbouncer, transactional_db, monkeypatch):
    """Django's connections go through the PgBouncer, with DISABLE_SERVER_SIDE_CURSORS as Django
    asks behind a pooler in transaction mode. Yields the server's address past the PgBouncer
    ({"host": …, "port": …}, for tests.database.other_connection(**it))."""
    params = connection.settings_dict
    server = {"host": params["HOST"] or "127.0.0.1", "port": params["PORT"] or 5432}
    connections.close_all()
    monkeypatch.setitem(params, "HOST", "127.0.0.1")
    monkeypatch.setitem(params, "PORT", str(pgbouncer.port))
    monkeypatch.setitem(params, "DISABLE_SERVER_SIDE_CURSORS", True)
    yield server
    connections.close_all()


@pytest.fixture
def database_default():
    """set(parameter, value): ALTER DATABASE <the test database> SET parameter, as an operator
    sets it for the role or the database (new sessions take it: Django's connection is closed);
    reset at the end."""
    name = connection.ops.quote_name(connection.settings_dict["NAME"])
    changed = set()

    def set_default(parameter, value):
        changed.add(parameter)
        with admin_session() as admin:
            admin.execute(f"ALTER DATABASE {name} SET {parameter} = '{value}'")
        connections.close_all()

    yield set_default
    with admin_session() as admin:
        for parameter in changed:
            admin.execute(f"ALTER DATABASE {name} RESET {parameter}")
    connections.close_all()


@pytest.fixture
def rows_only_role(transactional_db, monkeypatch):
    """Django's connections as a role of their own that may only read and write the rows of
    every table (the migrations ran as another, the owner), in a database whose TEMPORARY
    privilege is revoked from PUBLIC, as hardened setups do. Yields (role, grant): grant(sql)
    runs a GRANT or REVOKE as the owner. The role is dropped at the end, the privilege given
    back to PUBLIC."""
    quote = connection.ops.quote_name
    database = connection.settings_dict["NAME"]
    role = f"{database}_rows"  # one a test database: pytest-xdist's workers each have theirs
    owner = connection.settings_dict["USER"] or "postgres"

    def grant(sql):
        with admin_session(user=owner) as admin:
            admin.execute(sql)

    grant(f"DROP ROLE IF EXISTS {quote(role)}")
    grant(f"CREATE ROLE {quote(role)} LOGIN")
    grant(
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quote(role)};"
        f" GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quote(role)};"
        f" REVOKE TEMPORARY ON DATABASE {quote(database)} FROM PUBLIC"
    )
    connections.close_all()
    monkeypatch.setitem(connection.settings_dict, "USER", role)
    try:
        yield role, grant
    finally:
        connections.close_all()
        monkeypatch.undo()
        grant(
            f"GRANT TEMPORARY ON DATABASE {quote(database)} TO PUBLIC;"
            f" DROP OWNED BY {quote(role)}; DROP ROLE {quote(role)}"
        )


@pytest.fixture
def host_clock(monkeypatch):
    """A function that puts this process's clock (the recorder's) `seconds` ahead of Redis's
    (behind, negative), nothing measured yet."""

    def ahead(seconds):
        monkeypatch.setattr(recorder, "time", SimpleNamespace(time=lambda: time.time() + seconds))
        monkeypatch.setattr(clocks.offset, "seconds", None)
        recorder.today.forget()

    yield ahead
    recorder.today.forget()
