"""Shared fixtures: real services, started for the session when the environment does not name them."""

import os

import boto3
import pytest
from django.db import connection, connections
from django.test import TransactionTestCase
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from playwright.sync_api import sync_playwright

from tests import database, services, workers
from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.processes import run_manage

workers.check_loaded()

# The fuzz tests (tests/queues/test_fuzz_unit.py): a few seconds each; no deadline, as the machine
# is shared and noisy. CI (CI=true) runs the same examples every time and keeps no database.
hypothesis_settings.register_profile(
    "dev",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
hypothesis_settings.register_profile(
    "ci", hypothesis_settings.get_profile("dev"), derandomize=True, database=None
)
hypothesis_settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev")
)


def session_service(name):
    """The URL in the environment variable SERVICES[name] names, or that of the service of
    tests/services.py (started in the background at collection), stopped at the session's end."""
    variable = services.SERVICES[name][0]
    if url := os.environ.get(variable):
        yield url
        return
    service = services.started(name)
    yield service.url
    service.stop()


def pytest_collection_finish(session):
    if not session.config.option.collectonly:
        services.start_in_background(session.items)


def pytest_sessionfinish(session):
    services.stop_unused()


@pytest.fixture(scope="session")
def redis_cluster_url():
    """A real 3-node Redis Cluster: TEST_REDIS_CLUSTER_URL, or one started for this session."""
    yield from session_service("redis_cluster_url")


@pytest.fixture(scope="session")
def redis_tls_cluster_url():
    """A real 3-node Redis Cluster speaking TLS only, reached by the name localhost with the CA in
    ?ssl_ca_certs= (as ElastiCache Serverless is reached): TEST_REDIS_TLS_CLUSTER_URL, or one
    started for this session."""
    yield from session_service("redis_tls_cluster_url")


@pytest.fixture(scope="session")
def redis_tls_url():
    """A standalone Redis speaking TLS only, rediss://localhost:PORT/0?ssl_ca_certs=…:
    TEST_REDIS_TLS_URL, or one started for this session."""
    yield from session_service("redis_tls_url")


@pytest.fixture(scope="session")
def sqs_endpoint_url():
    """An SQS-protocol server over HTTP: TEST_SQS_ENDPOINT_URL, or moto server started here."""
    yield from session_service("sqs_endpoint_url")


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's test databases; on PostgreSQL, the flush after each transactional test
    (transaction=True, transactional_db, live_server) is tests.database.flush_to_baseline: the
    rows the migrations left, kept here, come back, and it costs milliseconds, not half a second.
    Tests that name available_apps or ask for serialized_rollback keep Django's flush."""
    with django_db_blocker.unblock():
        restore = {
            db.alias: database.keep_baseline(db)
            for db in connections.all()
            if db.vendor == "postgresql"
        }
    django_teardown = TransactionTestCase._fixture_teardown

    def fixture_teardown(self):
        names = self._databases_names(include_mirrors=False)
        if self.available_apps is not None or self.serialized_rollback or set(names) - set(restore):
            return django_teardown(self)
        for alias in names:
            database.flush_to_baseline(connections[alias], restore[alias])

    TransactionTestCase._fixture_teardown = fixture_teardown
    yield
    TransactionTestCase._fixture_teardown = django_teardown


@pytest.fixture
def moto_aws_env(sqs_endpoint_url):
    """The environment of a process that talks SQS to the test server, with fake credentials."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_SQS": sqs_endpoint_url,
    }


# The password of the proxy in sqs_behind_a_proxy's URLs, which no reader may see.
PROXY_SECRET = "s3cret-Pa55"


@pytest.fixture
def sqs_behind_a_proxy(settings, moto_aws_env, monkeypatch):
    """The default task backend on an SQS endpoint behind a proxy that takes credentials in the
    URL, and is down; returns that password (PROXY_SECRET)."""
    for name, value in moto_aws_env.items():
        monkeypatch.setenv(name, value)
    endpoint = f"http://proxy:{PROXY_SECRET}@127.0.0.1:1"
    settings.TASKS = {
        "default": {
            "BACKEND": "queues.sqs.backend.SQSBackend",
            "OPTIONS": {
                "QUEUE_URL": f"{endpoint}/123456789012/q",
                "CLIENT_PARAMS": {"endpoint_url": endpoint},
            },
        }
    }
    return PROXY_SECRET


@pytest.fixture
def moto_sqs_client(sqs_endpoint_url, moto_aws_env):
    """A boto3 SQS client of the test server, whatever this process's environment says."""
    return boto3.client(
        "sqs",
        endpoint_url=sqs_endpoint_url,
        region_name=moto_aws_env["AWS_DEFAULT_REGION"],
        aws_access_key_id=moto_aws_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=moto_aws_env["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture(autouse=True)
def _close_readiness_connection():
    """/readyz keeps its database connection between probes; closed after each test, so that
    none is left open on the test database when pytest-django drops it."""
    yield
    from casusult import health

    health.close_probe_connection()


@pytest.fixture
def manage():
    return run_manage


def pytest_addoption(parser):
    parser.addoption(
        "--reverse",
        action="store_true",
        help="run the tests in reverse order (tests must not depend on each other's order)",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--reverse"):
        items.reverse()


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium, one per test module (contexts give each test a clean slate).

    Playwright's sync API keeps an event loop in this thread, where Django would refuse ORM calls
    as if they came from async code: the module's tests are plain sync code, so allow them.
    """
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"No Chromium at {CHROMIUM}: install Debian's package with `make browser`"
            " (apt-get install -y chromium), or point TEST_CHROMIUM at a Chromium binary."
        )
    allowed = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if allowed is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = allowed


@pytest.fixture(autouse=True)
def _forget_enqueue_failures():
    """A test whose task backend failed leaves this process waiting before it enqueues again
    (impressions.schedule.backoff); the next test starts without that wait."""
    from impressions import schedule

    schedule.backoff.succeeded()
    yield
    schedule.backoff.succeeded()


@pytest.fixture(autouse=True)
def _forget_slow_redis_failures():
    """A test whose Redis failed slowly leaves this process's request path holding Redis off
    (impressions.holdoff); the next test starts without it."""
    from impressions.holdoff import holdoff

    holdoff.reset()
    yield
    holdoff.reset()


@pytest.fixture
def django_pool(transactional_db):
    """Django's own connection pool (OPTIONS["pool"], psycopg_pool) on the default database:
    two connections at most, a wait of 2 s for one. Yields the pool (closed at the end).

    OPTIONS is put back here, not by monkeypatch: its undo may come after the database's
    teardown, whose queries would open another pool, left open. It is put back even when closing
    fails (no psycopg_pool installed: every use of the connection raises), else every later
    test of the session would fail on the pool too."""
    params = connection.settings_dict
    options = params["OPTIONS"]
    connections.close_all()
    params["OPTIONS"] = {**options, "pool": {"min_size": 0, "max_size": 2, "timeout": 2}}
    try:
        yield connection.pool
    finally:
        try:
            connections.close_all()
            connection.close_pool()
        finally:
            params["OPTIONS"] = options
