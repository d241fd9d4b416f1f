"""The buffer on a Redis Cluster that refuses what ElastiCache Serverless refuses: recording, the
flush, the metrics scrape, the dashboard, the admin and `check --deploy` all work, and a refused
command the flush asks for (WAIT) is logged once per process (docs/operations/aws.md).

AWS lists the refused commands ("Supported and restricted Valkey, Memcached, and Redis OSS
commands"); Serverless answers a refused command as unknown (`ERR unknown command 'keys', with
args beginning with: …`), as a node started with `--rename-command KEYS ""` does. A refused
subcommand (CLIENT LIST) is refused here by an ACL rule (NOPERM): what Serverless answers then is
not documented. PSYNC and SYNC stay: the nodes' own replicas need them.
"""

import logging

import pytest
import redis
from django.core.management import call_command

import devservices
from casusult.models import Post
from impressions import flush as flush_module
from impressions.recorder import buffer_status
from impressions.recorder import record_impressions as record
from tests import services
from tests.factories import make_posts

from .conftest import buffer_at
from .support import REFUSED, REFUSED_SUBCOMMANDS

pytestmark = pytest.mark.django_db(transaction=True)

VIEWERS = 20


def serverless_cluster():
    renamed = [option for name in REFUSED for option in ("--rename-command", name, "")]
    memory = ["--maxmemory", "1gb", "--maxmemory-policy", "allkeys-lru"]
    return devservices.RedisClusterProcess(replicas=1, server_args=[*memory, *renamed])


services.register("serverless_like", "a Serverless-like Redis Cluster", serverless_cluster)


@pytest.fixture(scope="module")
def serverless_like():
    """3 primaries with a replica each (ROLE names it, so the flush asks for WAIT), refusing what
    Serverless refuses. maxmemory-policy allkeys-lru (Serverless runs volatile-lru): INFO memory
    still names it, so impressions.W007 shows that check --deploy reads it without CONFIG.
    Started early (tests/services.py)."""
    cluster = services.started("serverless_like")
    try:
        rules = [f"-{name}" for name in REFUSED_SUBCOMMANDS]
        for port in cluster.ports:
            answer = devservices.redis_command(port, "ACL", "SETUSER", "default", *rules)
            assert answer.strip() == "OK", answer
        yield cluster
    finally:
        cluster.stop()


def test_the_cluster_refuses_what_serverless_refuses(serverless_like):
    node = redis.Redis(port=serverless_like.ports[0])
    for command in (("CONFIG", "GET", "maxmemory"), ("WAIT", 0, 0), ("KEYS", "*")):
        with pytest.raises(redis.ResponseError, match=f"unknown command '{command[0]}'"):
            node.execute_command(*command)
    with pytest.raises(redis.exceptions.NoPermissionError):
        node.execute_command("CLIENT", "LIST")
    assert node.execute_command("ROLE")[0] == b"master"


def test_recording_reading_and_flushing_work(serverless_like, superuser_client, caplog):
    posts = make_posts(5)
    ids = [post.id for post in posts]
    flush_module._refused.clear()
    with buffer_at(serverless_like.url), caplog.at_level(logging.INFO):
        for viewer in range(VIEWERS):
            record(f"a:{viewer}", ids)
        assert buffer_status().pending_impressions == 5 * VIEWERS

        metrics = superuser_client.get("/metrics").content.decode()
        assert "impressions_buffer_up 1.0" in metrics
        assert f"impressions_pending {5.0 * VIEWERS}" in metrics
        dashboard = superuser_client.get("/admin/impressions/dashboard/").content.decode()
        assert f'id="range-pending">{5 * VIEWERS} of them not yet flushed' in dashboard
        changelist = superuser_client.get("/admin/casusult/post/").content.decode()
        assert "Redis is unavailable" not in changelist

        call_command("flush_impressions")
        for viewer in range(VIEWERS):
            record(f"b:{viewer}", ids)
        call_command("flush_impressions")

    assert (
        sorted(Post.objects.filter(id__in=ids).values_list("impressions", flat=True))
        == [2 * VIEWERS] * 5
    )
    refused = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    # Each node's replica is known by ROLE, WAIT is refused: said once, the flushes go on.
    assert len(refused) == 1
    assert "refuses WAIT (unknown command 'WAIT'" in refused[0]


def test_check_deploy_reads_the_eviction_policy_without_config(serverless_like, manage):
    checked = manage("check", "--deploy", env={"REDIS_URL": serverless_like.url})
    output = checked.stdout + checked.stderr
    assert "Traceback" not in output
    assert "impressions.E008" not in output
    assert "(impressions.W007)" in output and "allkeys-lru" in output
