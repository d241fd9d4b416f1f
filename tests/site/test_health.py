"""/healthz and /readyz against the real database, Redis and queue servers (and dead ports)."""

import json
import threading
import time
import uuid

import boto3
import pytest
from django.conf import settings
from django.core import checks
from django.db import connection, connections
from django.db.backends.signals import connection_created
from django.db.migrations.loader import MigrationLoader
from django.test import Client, override_settings

import queues.health
from casusult import health
from tests.database import checked_out, count_migration_loads, migrate_to
from tests.queues.rq.support import rq_settings

SQS = "queues.sqs.backend.SQSBackend"
RQ = "queues.rq.backend.RQBackend"


def readiness(client, **headers):
    started = time.monotonic()
    response = client.get("/readyz", **headers)
    return response, time.monotonic() - started


def test_healthz_answers_any_host_over_http(client):
    # A load balancer probes by the target's IP, over plain HTTP, even under settings.prod.
    with override_settings(ALLOWED_HOSTS=["casusult.example.com"], SECURE_SSL_REDIRECT=True):
        response = client.get("/healthz", HTTP_HOST="10.0.3.17:8000")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


@pytest.mark.django_db
def test_readyz_all_up(client):
    response, _ = readiness(client, HTTP_HOST="10.0.3.17")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "migrations", "impression_buffer", "queue"}
    assert body["checks"]["database"] == {
        "ok": True,
        "ms": pytest.approx(0, abs=1000),
        "detail": "postgresql",
    }
    assert body["checks"]["queue"]["detail"] == "DummyBackend"


@pytest.mark.django_db
def test_readyz_503_quickly_when_redis_is_down(dead_redis_url):
    with override_settings(IMPRESSIONS_REDIS_URL=dead_redis_url):
        response, elapsed = readiness(Client(REMOTE_ADDR="203.0.113.9"))
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["impression_buffer"]["ok"] is False
    assert checks["database"]["ok"] is True
    assert elapsed < 1.0
    # Host names and errors stay in the log; the public answer says ok or not ok.
    assert "127.0.0.1" not in response.content.decode()
    assert "ConnectionError" not in response.content.decode()


@pytest.mark.django_db
def test_readyz_answers_within_the_timeout_when_a_probe_hangs(client, monkeypatch):
    monkeypatch.setitem(health.PROBES, "stuck", lambda: time.sleep(3))
    with override_settings(READINESS_TIMEOUT=0.3):
        response, elapsed = readiness(client)
    assert response.status_code == 503
    assert response.json()["checks"]["stuck"] == {"ok": False, "error": "no answer within 0.3 s"}
    assert elapsed < 1.0


@pytest.mark.django_db
def test_readyz_probes_the_rq_redis(client, dead_redis_url):
    with override_settings(**rq_settings(settings.RQ_REDIS_URL)):
        assert client.get("/readyz").status_code == 200
    with override_settings(**rq_settings(f"{dead_redis_url}?socket_timeout=0.2")):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["queue"]["ok"] is False


@pytest.mark.sqs
@pytest.mark.django_db
def test_readyz_probes_the_sqs_queue(client, monkeypatch, moto_aws_env):
    monkeypatch.setattr(health, "READINESS_CACHE_SECONDS", 0)  # the queue appears in between
    for name, value in moto_aws_env.items():
        monkeypatch.setenv(name, value)
    name = f"ready-{uuid.uuid4().hex[:8]}"
    tasks = {"default": {"BACKEND": SQS, "OPTIONS": {"QUEUE_NAME": name}}}
    # The error's text is what this test reads, not the probe's speed: a cold boto3 client (a new
    # venv compiling botocore, a loaded machine) may take longer than the 1 s default.
    with override_settings(TASKS=tasks, READINESS_TIMEOUT=15):
        missing = client.get("/readyz")
        assert missing.status_code == 503
        assert missing.json()["checks"]["queue"]["error"].startswith("QueueDoesNotExist")
        boto3.client("sqs").create_queue(QueueName=name)
        ready = client.get("/readyz")
    assert ready.status_code == 200, ready.content
    assert ready.json()["checks"]["queue"]["detail"] == "SQSBackend"


def client_from(address, **headers):
    """A test client whose requests come from `address` (REMOTE_ADDR)."""
    return Client(REMOTE_ADDR=address, **headers)


@pytest.mark.django_db
def test_readyz_says_only_ok_or_not_ok_to_an_address_outside_the_detail_networks(dead_redis_url):
    with override_settings(IMPRESSIONS_REDIS_URL=f"redis://:s3cret@{dead_redis_url[8:]}"):
        answer = client_from("203.0.113.9").get("/readyz")
        assert answer.status_code == 503
        assert answer.json() == {
            "status": "unavailable",
            "checks": {
                "database": {"ok": True},
                "migrations": {"ok": True},
                "impression_buffer": {"ok": False},
                "queue": {"ok": True},
            },
        }
        # Loopback sees the details, redacted; through a proxy, loopback is anybody.
        local = client_from("127.0.0.1").get("/readyz").json()["checks"]
        proxied = client_from("127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9").get("/readyz")
    assert local["database"]["detail"] == "postgresql"
    assert local["impression_buffer"]["error"].startswith("ConnectionError")
    assert "s3cret" not in json.dumps(local)
    assert proxied.json()["checks"]["impression_buffer"] == {"ok": False}


@pytest.mark.django_db
def test_detail_networks_come_from_the_setting(settings):
    settings.HEALTH_DETAIL_NETWORKS = ["10.0.0.0/16"]
    inside = client_from("10.0.3.17").get("/readyz").json()["checks"]["database"]
    outside = client_from("127.0.0.1").get("/readyz").json()["checks"]["database"]
    assert inside["detail"] == "postgresql"
    assert outside == {"ok": True}
    settings.HEALTH_DETAIL_NETWORKS = ["10.0.0.0/16", "not-a-network"]
    errors = checks.run_checks()
    assert [error.id for error in errors if error.id.startswith("casusult.")] == ["casusult.E001"]


@pytest.mark.django_db
def test_readyz_in_a_loop_reuses_one_database_connection(monkeypatch):
    opened = []

    def count(sender, connection, **kwargs):
        opened.append(connection.alias)

    connection_created.connect(count)
    monkeypatch.setattr(health, "READINESS_CACHE_SECONDS", 0)  # every call probes
    try:
        for _ in range(10):
            assert client_from("203.0.113.9").get("/readyz").status_code == 200
    finally:
        connection_created.disconnect(count)
    assert opened == ["default"]  # one connection for the ten probes (before: ten)


def test_readyz_gives_its_connection_back_to_djangos_pool(django_pool, monkeypatch):
    monkeypatch.setattr(health, "READINESS_CACHE_SECONDS", 0)  # every call probes
    for _ in range(3):
        assert client_from("203.0.113.9").get("/readyz").status_code == 200
    connections.close_all()
    assert checked_out(django_pool) == 0  # before: the probe's, out of the pool for good


@pytest.mark.django_db
def test_readyz_answers_a_loop_from_its_cache(monkeypatch):
    probes = []
    monkeypatch.setitem(health.PROBES, "counted", lambda: probes.append(1))
    monkeypatch.setattr(health, "READINESS_CACHE_SECONDS", 60)  # the loop runs well within it
    health.forget_answer()
    for _ in range(20):
        assert client_from("203.0.113.9").get("/readyz").status_code == 200
    assert len(probes) == 1


@pytest.mark.django_db
def test_a_kept_connection_the_server_closed_is_replaced_without_a_failure(monkeypatch):
    monkeypatch.setattr(health, "READINESS_CACHE_SECONDS", 0)
    assert client_from("127.0.0.1").get("/readyz").status_code == 200
    kept = health.probe_connection()
    with connection.cursor() as cursor:  # the server ends the probe's session, as a restart would
        cursor.execute("SELECT pg_terminate_backend(%s)", [kept.connection.info.backend_pid])
    assert client_from("127.0.0.1").get("/readyz").status_code == 200


@pytest.mark.django_db
def test_readyz_is_503_while_the_database_takes_no_writes(monkeypatch):
    """A database that answers SELECT 1 but takes no writes (DATABASE_URL leading to a replica
    or a reader endpoint after a failover, default_transaction_read_only): every flush fails,
    and logins and admin saves. Before, /readyz said the database was ok."""
    monkeypatch.setattr(health, "READINESS_CACHE_SECONDS", 0)
    assert client_from("127.0.0.1").get("/readyz").status_code == 200
    kept = health.probe_connection()
    with kept.cursor() as cursor:  # the session a replica would give: read-only transactions
        cursor.execute("SET SESSION default_transaction_read_only = on")
    response = client_from("127.0.0.1").get("/readyz")
    assert response.status_code == 503
    database = response.json()["checks"]["database"]
    assert database["ok"] is False
    assert database["error"].startswith("ReadOnlyDatabase: the database takes no writes")
    assert "DATABASE_URL must lead to the primary" in database["error"]
    # The probe's connection was closed: the next one connects anew (to the primary by then).
    assert client_from("127.0.0.1").get("/readyz").status_code == 200


def test_a_cached_answer_counts_from_when_its_probes_started(monkeypatch):
    """A probe that takes 0.3 s: its answer is reused READINESS_CACHE_SECONDS from its start.
    Counted from its end, an ok that began before an outage was still served after the cache
    time had passed since the outage began (the load test's /readyz answering 200 while down)."""
    calls = []

    def slow():
        calls.append(time.monotonic())
        time.sleep(0.3)

    monkeypatch.setattr(health, "PROBES", {"slow": slow})
    monkeypatch.setattr(health, "READINESS_CACHE_SECONDS", 0.5)
    health.forget_answer()
    started = time.monotonic()
    health.cached_probes()
    health.cached_probes()  # 0.3 s after the probe started: the cached answer
    assert len(calls) == 1
    time.sleep(max(0.0, started + 0.6 - time.monotonic()))
    health.cached_probes()  # 0.6 s after it started, 0.3 s after it ended: probed again
    assert len(calls) == 2
    health.forget_answer()


def test_an_answer_that_waits_on_a_probe_still_running_is_as_old_as_that_probe(monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(health, "PROBES", {"hung-once": lambda: release.wait(5)})
    before = time.monotonic()
    _, first = health.probes_since(timeout=0.05)  # gives up on it; the probe keeps running
    time.sleep(0.1)
    answer, again = health.probes_since(timeout=0.05)  # waits on that same probe again
    release.set()
    assert answer["hung-once"]["ok"] is False
    assert again == first and before <= first < before + 0.05


@pytest.mark.django_db(transaction=True)
def test_readyz_is_503_while_a_migration_is_unapplied(monkeypatch):
    """New code deployed before its migrate ran: every page fails with `relation … does not
    exist` while SELECT 1 answers. /readyz says so, and looks again at most every
    MIGRATIONS_RECHECK_SECONDS until all are applied, then never again."""
    loads = count_migration_loads(monkeypatch, queues.health)
    monkeypatch.setattr(queues.health, "MIGRATIONS", queues.health.Migrations())  # a new process
    monkeypatch.setattr(queues.health, "MIGRATIONS_RECHECK_SECONDS", 60)
    monkeypatch.setattr(health, "READINESS_CACHE_SECONDS", 0)  # every call probes
    graph = MigrationLoader(connection).graph
    [latest] = graph.leaf_nodes("impressions")
    [previous] = [
        node.key for node in graph.node_map[latest].parents if node.key[0] == "impressions"
    ]
    migrate_to(previous)  # manage.py migrate impressions <the one before the latest>
    try:
        local = client_from("127.0.0.1").get("/readyz")
        public = client_from("203.0.113.9").get("/readyz")
    finally:
        migrate_to(latest)
    assert local.status_code == 503
    assert local.json()["checks"]["migrations"] == {
        "ok": False,
        "error": f"UnappliedMigrations: 1 not applied: impressions.{latest[1]};"
        " run manage.py migrate",
    }
    assert public.status_code == 503
    assert public.json()["checks"]["migrations"] == {"ok": False}  # the reason: loopback only
    assert public.json()["checks"]["database"] == {"ok": True}
    assert len(loads) == 1  # the second probe, within the interval, did not load the graph

    # Migrated now; within the interval, the last look still stands.
    assert client_from("203.0.113.9").get("/readyz").status_code == 503
    assert len(loads) == 1
    monkeypatch.setattr(queues.health, "MIGRATIONS_RECHECK_SECONDS", 0)  # the interval is over
    ready = client_from("127.0.0.1").get("/readyz")
    assert ready.status_code == 200, ready.content
    assert ready.json()["checks"]["migrations"]["detail"] == "all applied"
    for _ in range(5):
        assert client_from("203.0.113.9").get("/readyz").status_code == 200
    assert len(loads) == 2  # all applied: never looked at again
    health.close_probe_connection()
    assert others_connected_within(5) == 0  # each look closed its connection (the probe's: above)


def others_connected_within(seconds):
    """How many other sessions are connected to the test database, once none is or after
    `seconds`: a closed connection's server process leaves pg_stat_activity when it has exited,
    a moment after the client closed it (longer on a loaded machine)."""
    deadline = time.monotonic() + seconds
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            if not (count := cursor.fetchone()[0]) or time.monotonic() > deadline:
                return count
            time.sleep(0.05)


@pytest.mark.django_db
def test_migrations_that_cannot_be_read_are_reported_and_not_looked_at_every_probe(monkeypatch):
    connects = []

    def dead():  # the database's server is down
        connects.append(1)
        default = connections["default"]
        return default.__class__({**default.settings_dict, "PORT": 1}, "default")

    monkeypatch.setattr(queues.health, "MIGRATIONS_RECHECK_SECONDS", 60)
    migrations = queues.health.Migrations(connect=dead)
    for _ in range(3):
        with pytest.raises(queues.health.MigrationsUnknown, match="OperationalError"):
            migrations.check()
    assert len(connects) == 1


@pytest.mark.django_db
def test_a_probe_failing_every_second_logs_a_line_a_minute_and_one_when_it_answers(
    dead_redis_url, monkeypatch, caplog
):
    now = [1000.0]
    monkeypatch.setattr(health, "failures", health.ProbeLines(60.0, clock=lambda: now[0]))
    monkeypatch.setattr(health, "READINESS_CACHE_SECONDS", 0)  # every request probes
    client = client_from("203.0.113.9")

    def outage(seconds):
        with override_settings(IMPRESSIONS_REDIS_URL=dead_redis_url):
            for _ in range(seconds):  # a Kubernetes readiness probe every second
                assert client.get("/readyz").status_code == 503
                now[0] += 1

    outage(61)
    assert client.get("/readyz").status_code == 200
    assert client.get("/readyz").status_code == 200
    outage(1)  # a new outage is news: logged at once
    lines = [r.getMessage() for r in caplog.records if r.name == "casusult.health"]
    assert len(lines) == 4, lines  # before: 62, one a request
    assert lines[0].startswith("readiness: impression_buffer is down: ConnectionError")
    assert lines[1].startswith("readiness: impression_buffer is down: ConnectionError")
    assert lines[1].endswith("; 59 more failed probes since the last such line")
    assert lines[2] == "readiness: impression_buffer answers again"
    assert lines[3].startswith("readiness: impression_buffer is down: ConnectionError")


class HostReadingMiddleware:
    """Reads the request's Host before the view, as OpenTelemetry's Django instrumentation's
    middleware does (request.build_absolute_uri()), which it puts first in MIDDLEWARE."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.build_absolute_uri("?")
        return self.get_response(request)


HOST_READER = f"{__name__}.HostReadingMiddleware"


def test_a_middleware_before_the_probes_is_named_with_the_remedy(client):
    """A middleware put before ProbeMiddleware (OpenTelemetry's Django instrumentation puts its
    own first) that reads the Host refused a balancer's probe by IP (400): every target out of
    service, while `manage.py check` said nothing."""
    probes_first = [error.id for error in checks.run_checks() if error.id.startswith("casusult.W")]
    assert probes_first == []
    middleware = [HOST_READER, *settings.MIDDLEWARE]
    with override_settings(ALLOWED_HOSTS=["casusult.example.com"], MIDDLEWARE=middleware):
        assert client.get("/healthz", HTTP_HOST="10.0.3.17:8000").status_code == 400
        warnings = [error for error in checks.run_checks() if error.id == "casusult.W001"]
    assert len(warnings) == 1
    assert HOST_READER in warnings[0].msg
    assert "OTEL_PYTHON_DJANGO_MIDDLEWARE_POSITION=1" in warnings[0].hint
