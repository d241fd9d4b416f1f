"""RQ over TLS, reached by the name localhost with the CA in the URL (?ssl_ca_certs=), as a user
writes a rediss:// URL: the TLS cluster is refused at start-up by the live probe (its host name is
no known ElastiCache name), the TLS standalone Redis runs tasks, and its numbers and probe answer."""

import datetime
import time
import urllib.parse

import pytest
from django.core import checks
from django.utils import timezone
from redis.cluster import RedisCluster

from queues.exceptions import ClusterModeRedis
from queues.rq.connection import JSON_SERIALIZER
from tests.queues import tasks as queue_tasks
from tests.queues.rq.support import check_errors, rq_on, rq_settings, worker_env
from tests.queues.test_queue_stats import queue_stats

pytestmark = [pytest.mark.tls, pytest.mark.django_db]


@pytest.fixture
def rq_tls_url(redis_tls_url, settings):
    """RQ on the standalone TLS Redis (emptied before and after), with the test tasks."""
    with rq_on(redis_tls_url, settings):
        yield redis_tls_url


@pytest.mark.cluster
def test_check_deploy_and_runworker_refuse_the_tls_cluster(redis_tls_cluster_url, manage):
    # The URL alone says nothing (no known cluster name); the live probe of --deploy does.
    assert check_errors(redis_tls_cluster_url) == ""
    deploy_errors = check_errors(redis_tls_cluster_url, deploy=True)
    assert "queues.E002" in deploy_errors and "cluster_enabled:1" in deploy_errors, deploy_errors

    worker = manage("runworker", "--burst", env=worker_env(redis_tls_cluster_url))
    assert worker.returncode != 0
    assert "CommandError: RQ cannot use the Redis at rediss://localhost:" in worker.stderr
    assert "cluster_enabled:1" in worker.stderr and "SQSBackend" in worker.stderr
    assert "Traceback" not in worker.stderr
    cluster = RedisCluster.from_url(redis_tls_cluster_url)
    assert cluster.keys("rq:*", target_nodes=RedisCluster.PRIMARIES) == []
    cluster.close()


def test_runworker_runs_due_and_delayed_tasks_over_tls(rq_tls_url, manage):
    deploy_errors = check_errors(rq_tls_url, deploy=True)
    assert "queues.E00" not in deploy_errors, deploy_errors

    due = timezone.now() + datetime.timedelta(seconds=0.5)
    queue_tasks.record_marker.enqueue("now")
    queue_tasks.record_marker.using(run_after=due).enqueue("later")  # through RQ's scheduler
    time.sleep(max(0, (due - timezone.now()).total_seconds()) + 0.1)
    worker = manage("runworker", "--burst", env=worker_env(rq_tls_url))

    assert worker.returncode == 0, worker.stderr
    assert sorted(queue_tasks.markers()) == ["later", "now"]


def test_a_certificate_the_url_does_not_trust_fails_closed_naming_the_ca_option(
    redis_tls_url, settings
):
    untrusted = urllib.parse.urlsplit(redis_tls_url)._replace(query="").geturl()
    for name, value in rq_settings(untrusted).items():
        setattr(settings, name, value)
    errors = checks.run_checks(include_deployment_checks=True, tags=[checks.Tags.compatibility])
    [error] = [error for error in errors if error.id == "queues.E003"]
    assert "certificate verify failed" in error.msg
    assert "?ssl_ca_certs=/path/ca.pem" in error.hint


def test_queue_stats_readiness_and_the_dashboard_read_the_tls_redis(
    rq_tls_url, client, django_user_model
):
    waiting = queue_tasks.record_marker.enqueue("waiting")
    code, output = queue_stats()
    assert code == 0, output
    assert "queued=1" in output
    readiness = client.get("/readyz")  # from 127.0.0.1: with the details
    assert readiness.status_code == 200, readiness.content
    assert readiness.json()["checks"]["queue"]["ok"] is True
    client.force_login(django_user_model.objects.create_superuser("operator"))
    listing = client.get("/admin/rq/queues/0/")  # django-rq's own connection of RQ_QUEUES
    assert listing.status_code == 200
    assert waiting.id in listing.text


@pytest.mark.cluster
def test_an_entry_by_host_with_ssl_is_refused_naming_its_rediss_url(
    redis_tls_cluster_url, settings
):
    """RQ_QUEUES by HOST/PORT with SSL (and the CA in REDIS_CLIENT_KWARGS, as django-rq takes it):
    the refusal names the endpoint rediss://, as it is reached, not redis://."""
    parts = urllib.parse.urlsplit(redis_tls_cluster_url)
    settings.TASKS = rq_settings(redis_tls_cluster_url)["TASKS"]
    settings.RQ_QUEUES = {
        "default": {
            "HOST": parts.hostname,
            "PORT": parts.port,
            "DB": 0,
            "SSL": True,
            "REDIS_CLIENT_KWARGS": {
                "ssl_ca_certs": urllib.parse.parse_qs(parts.query)["ssl_ca_certs"][0]
            },
            "SERIALIZER": JSON_SERIALIZER,
        }
    }
    endpoint = f"rediss://localhost:{parts.port}/0"
    errors = checks.run_checks(include_deployment_checks=True, tags=[checks.Tags.compatibility])
    refused = [error.msg for error in errors if error.id == "queues.E002"]
    assert refused and f"the Redis at {endpoint} cannot host RQ" in refused[0], errors
    with pytest.raises(ClusterModeRedis, match=f"RQ cannot use the Redis at {endpoint}:"):
        queue_tasks.record_marker.enqueue("never")
