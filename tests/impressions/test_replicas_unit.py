"""How the flush reads a node's ROLE reply (impressions.flush.replicas_of) and a cluster node's
CLUSTER NODES (cluster_replicas_of)."""

import logging
from types import SimpleNamespace

import pytest
from redis._parsers.base import BaseParser
from redis._parsers.helpers import parse_cluster_nodes
from redis.exceptions import NoPermissionError, RedisError, ResponseError

from impressions import flush

NODE = SimpleNamespace(
    client=SimpleNamespace(
        connection_pool=SimpleNamespace(connection_kwargs={"host": "h", "port": 1})
    )
)


def test_a_primary_counts_the_replicas_it_lists():
    replicas = [[b"127.0.0.1", b"7001", b"10"], [b"127.0.0.1", b"7002", b"10"]]
    assert flush.replicas_of([b"master", 10, replicas], NODE) == 2
    assert flush.replicas_of([b"master", 10, []], NODE) == 0


def test_a_node_that_is_no_primary_any_more_fails_the_flush():
    with pytest.raises(RedisError, match="h:1 is a slave now"):
        flush.replicas_of([b"slave", b"127.0.0.1", 7000, b"connected", 10], NODE)


def test_a_refused_role_counts_none_and_is_logged_once(caplog, monkeypatch):
    monkeypatch.setattr(flush, "_refused", set())
    refusal = ResponseError("unknown command 'ROLE', with args beginning with: ")
    with caplog.at_level(logging.WARNING, logger="impressions.flush"):
        assert flush.replicas_of(refusal, NODE) == 0
        assert flush.replicas_of(refusal, NODE) == 0
    assert len(caplog.records) == 1


def test_any_other_error_reply_fails_the_flush():
    with pytest.raises(ResponseError, match="LOADING"):
        flush.replicas_of(ResponseError("LOADING Redis is loading the dataset"), NODE)


def test_a_role_an_acl_refuses_counts_none():
    # What redis-py makes of the server's `NOPERM this user has no permissions to run the 'role'
    # command` (a user without @dangerous): a NoPermissionError whose text has no NOPERM left.
    # Read as any other error, it failed every flush of such a user.
    refusal = BaseParser.parse_error(
        "NOPERM this user has no permissions to run the 'role' command"
    )
    assert isinstance(refusal, NoPermissionError)
    assert flush.replicas_of(refusal, NODE) == 0


CLUSTER_NODES = """\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b1 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922
a2 127.0.0.1:7003@17003 slave a1 0 0 1 connected
a3 127.0.0.1:7004@17004 slave a1 0 0 1 disconnected
a4 127.0.0.1:7005@17005 slave,fail? a1 0 0 1 disconnected
a5 127.0.0.1:7006@17006 slave,fail a1 0 0 1 disconnected
a6 :0@0 slave,noaddr a1 0 0 1 disconnected
b2 127.0.0.1:7002@17002 slave b1 0 0 2 connected
"""


def test_a_cluster_node_counts_its_replicas_but_the_failed_ones():
    # Connected or not (a dropped replication link), suspected or not: any of them may be
    # promoted; one the cluster holds failed may not.
    assert flush.cluster_replicas_of(parse_cluster_nodes(CLUSTER_NODES)) == 3
    assert flush.cluster_replicas_of(None) == 0


def test_a_refused_cluster_nodes_counts_none():
    refusal = ResponseError("unknown subcommand 'NODES'. Try CLUSTER HELP.")
    assert flush.cluster_replicas_of(refusal) == 0
