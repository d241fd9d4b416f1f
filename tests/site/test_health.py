"""/healthz and /readyz against the real database, Redis and queue servers (and dead ports)."""

import time
import uuid

import boto3
import pytest
from django.conf import settings
from django.test import override_settings

from casusult import health
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
    assert set(body["checks"]) == {"database", "impression_buffer", "queue"}
    assert body["checks"]["database"] == {
        "ok": True,
        "ms": pytest.approx(0, abs=1000),
        "detail": "postgresql",
    }
    assert body["checks"]["queue"]["detail"] == "DummyBackend"


@pytest.mark.django_db
def test_readyz_503_quickly_when_redis_is_down(client, dead_redis_url):
    with override_settings(IMPRESSIONS_REDIS_URL=dead_redis_url):
        response, elapsed = readiness(client)
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["impression_buffer"]["ok"] is False
    assert checks["database"]["ok"] is True
    assert elapsed < 1.0
    # Host names stay in the log; the public answer names only the error class.
    assert "127.0.0.1" not in response.content.decode()


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
    for name, value in moto_aws_env.items():
        monkeypatch.setenv(name, value)
    name = f"ready-{uuid.uuid4().hex[:8]}"
    tasks = {"default": {"BACKEND": SQS, "OPTIONS": {"QUEUE_NAME": name}}}
    with override_settings(TASKS=tasks):
        missing = client.get("/readyz")
        assert missing.status_code == 503
        assert missing.json()["checks"]["queue"]["error"] == "QueueDoesNotExist"
        boto3.client("sqs").create_queue(QueueName=name)
        ready = client.get("/readyz")
    assert ready.status_code == 200, ready.content
    assert ready.json()["checks"]["queue"]["detail"] == "SQSBackend"
