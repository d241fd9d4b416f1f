"""RQ's cluster refusal without a server: endpoints recognised from the URL, the probe's fallback."""

import pytest
import redis
from django.tasks import task_backends

from queues.rq.cluster import cluster_endpoint_reason, probe_cluster_reason
from queues.rq.connection import endpoint_url
from tests.queues.rq.support import SERVERLESS, rq_settings


@pytest.mark.parametrize(
    "url",
    [
        SERVERLESS,
        "redis://my-valkey-abcdef.serverless.use1.cache.amazonaws.com:6379/0",
        "rediss://cache.serverless.cnn1.cache.amazonaws.com.cn:6379",
        "redis://casusult.abc123.clustercfg.apne1.cache.amazonaws.com:6379",
        "redis://10.0.0.5:6379/0?cluster=true",
        "redis+cluster://10.0.0.5:6379",
    ],
)
def test_known_cluster_endpoints_are_recognised_from_the_url(url):
    assert cluster_endpoint_reason(url)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://casusult.abc123.ng.0001.apne1.cache.amazonaws.com:6379",  # a non-cluster node
        "redis://serverless.example.com:6379",
    ],
)
def test_standalone_urls_pass(url):
    assert cluster_endpoint_reason(url) is None


def test_a_host_port_entry_is_judged_by_its_host():
    config = {"HOST": "x.serverless.use1.cache.amazonaws.com", "PORT": 6379, "DB": 0}
    assert "ElastiCache Serverless" in cluster_endpoint_reason(endpoint_url(config))
    assert endpoint_url({"SENTINELS": [("s", 26379)], "MASTER_NAME": "m"}) is None
    assert cluster_endpoint_reason(None) is None  # a Sentinel entry: only the live probe judges


class ProxyAnswering:
    """A server that hides INFO and rejects multi-slot transactions, like a sharding proxy."""

    def info(self, section):
        raise redis.ResponseError("ERR unknown command 'INFO'")

    def pipeline(self, transaction):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def set(self, *args, **kwargs):
        pass

    def execute(self):
        raise redis.ResponseError("CROSSSLOT Keys in request don't hash to the same slot")

    def delete(self, *keys):
        raise redis.ResponseError("CROSSSLOT Keys in request don't hash to the same slot")


class OddAnswering(ProxyAnswering):
    """A server whose transaction answer makes no sense: the probe fails closed."""

    def execute(self):
        return ["QUEUED?"]


def test_probe_falls_back_to_a_two_slot_transaction_and_fails_closed():
    assert "MULTI/EXEC" in probe_cluster_reason(ProxyAnswering())
    assert "answered" in probe_cluster_reason(OddAnswering())


def test_backend_check_is_registered_with_django_tasks(settings):
    for name, value in rq_settings(SERVERLESS).items():
        setattr(settings, name, value)
    errors = task_backends["default"].check()
    assert [error.id for error in errors] == ["queues.E001"]
