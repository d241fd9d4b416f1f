"""The buffer on a Redis Cluster that speaks TLS only, as ElastiCache Serverless does: reached by the
name localhost, trusting the CA the URL names (?ssl_ca_certs=), as a user writes the URL."""

import urllib.parse

import pytest
import redis
from django.test import override_settings
from redis.cluster import RedisCluster

import impressions
from impressions.recorder import pending_counts, record_impressions
from tests.factories import make_posts

from .test_buffer_check import buffer_errors
from .test_record import count_and_flush_the_script, served_ids

pytestmark = [pytest.mark.django_db, pytest.mark.cluster, pytest.mark.tls]


def test_scripted_views_count_then_flush_exactly_over_tls(tls_cluster_buffer):
    assert isinstance(tls_cluster_buffer, RedisCluster)  # detected over TLS (INFO cluster)
    count_and_flush_the_script()


def test_timeline_requests_count_and_the_buffer_s_probes_answer_over_tls(
    client, tls_cluster_buffer
):
    make_posts(3)
    served = served_ids(client.get("/api/timeline/"))
    assert served and pending_counts(served) == dict.fromkeys(served, 1)
    assert impressions.ping(timeout=0.5) == "RedisCluster"
    assert impressions.buffer_status(timeout=0.5).pending_impressions == len(served)
    readiness = client.get("/readyz")  # from 127.0.0.1: with the details
    assert readiness.status_code == 200, readiness.content
    assert readiness.json()["checks"]["impression_buffer"]["ok"] is True


def test_the_ca_comes_from_the_url_and_check_deploy_says_when_it_is_missing(
    redis_tls_cluster_url,
):
    """Without ?ssl_ca_certs= the server's certificate is not trusted (so the TLS above is real),
    and every impression would be lost: check --deploy says so, as for refused credentials."""
    untrusted = urllib.parse.urlsplit(redis_tls_cluster_url)._replace(query="").geturl()
    with (
        override_settings(IMPRESSIONS_REDIS_URL=untrusted, IMPRESSIONS_REDIS_CLUSTER="auto"),
        pytest.raises(redis.ConnectionError, match="certificate verify failed"),
    ):
        impressions.ping(timeout=0.5)
    [error] = buffer_errors(untrusted)
    assert f"The impression buffer at {untrusted} presented a certificate" in error.msg
    assert "ssl_ca_certs" in error.hint
    assert buffer_errors(redis_tls_cluster_url) == []


def test_a_tls_connection_the_server_closed_is_replaced_before_the_call(tls_cluster_buffer):
    assert record_impressions("u:1", [1]).counted == 1  # this thread now holds a connection
    held = [
        (node, connection["id"])
        for node in tls_cluster_buffer.get_primaries()
        for connection in tls_cluster_buffer.client_list(target_nodes=node)
        if connection["cmd"] == "evalsha"
    ]
    assert held
    for node, connection_id in held:
        tls_cluster_buffer.client_kill_filter(_id=connection_id, target_nodes=node)
    assert record_impressions("u:2", [1]).counted == 1  # not lost: a fresh connection took it
    assert pending_counts([1]) == {1: 2}
