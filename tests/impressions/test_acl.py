"""The buffer under a Redis ACL user holding exactly what docs/operations/aws.md gives it: every
path that reaches Redis works (no NOPERM: ACL LOG stays empty), and every command granted is used.

Servers of our own (a redis-server, the session's private cluster): the ACL is set on them, and
their command statistics, which count the commands scripts run too, are the buffer user's.
"""

import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
from django.core.management import call_command
from django.test import override_settings

from casusult.models import Post
from impressions import flush as flush_module
from impressions.recorder import record_impressions
from tests.factories import insert_posts, make_user

from .support import (
    DUMMY_TASKS,
    REFUSED,
    REFUSED_SUBCOMMANDS,
    every_buffer_path,
    reset_loss_counter,
)

pytestmark = pytest.mark.django_db(transaction=True)

AWS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "operations" / "aws.md"
PASSWORD = "buffer-Pa55"
# Granted, and sent only in a moment no test here makes: WAIT to a node that has replicas (the
# private cluster has none), ASKING while a slot moves to another node; or only by some redis-py
# versions: HELLO by those that speak RESP3 by default (8.2 of requirements.txt), not by 5.3, the
# lowest the apps take (make test-lowest), which speaks RESP2 and logs in with AUTH.
SOMETIMES = {"WAIT", "ASKING", "HELLO"}
# The test's own commands (as administrator), which the command statistics count too.
OURS = {"ACL|LOG", "ACL|SETUSER", "CONFIG|RESETSTAT", "FLUSHDB"}


def documented_rules():
    """The rules aws.md gives the buffer's ACL user: `ACL SETUSER impressions on >… <rules>`."""
    found = re.search(r"ACL SETUSER impressions on >\S+ ([^`]+)`", AWS_PAGE.read_text())
    assert found, "aws.md gives no ACL SETUSER line for the buffer's user"
    return found.group(1).split()


def granted_commands(rules):
    """The commands (CLUSTER|SLOTS for a subcommand) that `rules` allow one by one."""
    return {rule[1:].upper() for rule in rules if rule.startswith("+") and "@" not in rule}


@pytest.fixture(params=["standalone", "standalone-db3", "cluster"])
def acl_buffer(request):
    """The buffer as ACL user `impressions` with aws.md's rules (and +select for a database
    other than 0, as the page says), on each node; yields the nodes' administrator clients."""
    database = 3 if request.param == "standalone-db3" else 0
    rules = [*documented_rules(), *(["+select"] if database else [])]  # without: NOPERM
    if request.param == "cluster":
        ports = request.getfixturevalue("private_cluster").ports
    else:
        url = request.getfixturevalue("private_redis").url
        ports = [int(url.rsplit(":", 1)[1].split("/")[0])]
    nodes = [redis.Redis(port=port, db=database) for port in ports]
    for node in nodes:
        node.execute_command("ACL", "SETUSER", "impressions", "reset", "on", f">{PASSWORD}", *rules)
        node.flushdb()
        # The scripts as on a new node: an earlier test's SCRIPT LOAD would spare this one its own.
        node.script_flush()
        node.config_resetstat()
        node.execute_command("ACL", "LOG", "RESET")
    url = f"redis://impressions:{PASSWORD}@127.0.0.1:{ports[0]}/{database}"
    try:
        with override_settings(
            TASKS=DUMMY_TASKS, IMPRESSIONS_REDIS_URL=url, IMPRESSIONS_REDIS_CLUSTER="auto"
        ):
            reset_loss_counter()
            yield SimpleNamespace(nodes=nodes, rules=rules)
    finally:
        for node in nodes:
            node.execute_command("ACL", "DELUSER", "impressions")
            node.flushdb()


def used_commands(nodes):
    """Commands run on `nodes` since the fixture's reset (scripts' too), but the test's own."""
    return {
        name.removeprefix("cmdstat_").upper()
        for node in nodes
        for name in node.info("commandstats")
    } - OURS


def test_every_path_works_under_the_documented_acl(
    acl_buffer, superuser_client, monkeypatch, caplog
):
    """Record (a cookie-less viewer too), read, flush (scheduled, by hand, a full Redis's), the
    dashboard, /metrics, /readyz, check --deploy, flush_impressions and rollup_impressions."""
    ids = insert_posts(3, make_user())
    flush_module._refused.clear()
    with caplog.at_level(logging.WARNING):
        every_buffer_path(ids, monkeypatch)
        record_impressions("u:4", ids)
        assert superuser_client.get("/admin/impressions/dashboard/").status_code == 200
        assert "impressions_buffer_up 1.0" in superuser_client.get("/metrics").content.decode()
        assert superuser_client.get("/readyz").status_code == 200
        call_command("check", "--deploy")
        call_command("flush_impressions")
        call_command("rollup_impressions")
    refused = [entry for node in acl_buffer.nodes for entry in node.execute_command("ACL", "LOG")]
    assert refused == []
    assert [r.getMessage() for r in caplog.records if "NOPERM" in r.getMessage()] == []
    counts = Post.objects.filter(id__in=ids).values_list("impressions", flat=True)
    assert sorted(counts) == [5] * 3  # four viewers and the timeline's
    cluster_only = (
        {"CLUSTER|SLOTS", "CLUSTER|NODES", "COMMAND"} if len(acl_buffer.nodes) == 1 else set()
    )
    unused = granted_commands(acl_buffer.rules) - used_commands(acl_buffer.nodes)
    assert unused - SOMETIMES - cluster_only == set()


def test_the_documented_rules_name_one_command_serverless_forbids_and_the_page_says_so():
    """ElastiCache refuses an access string that names a command it forbids: of the buffer's
    rules, Serverless forbids WAIT only (the flush does without it there), and the page says
    to leave it out."""
    forbidden = {*REFUSED, *(name.upper() for name in REFUSED_SUBCOMMANDS)}
    assert granted_commands(documented_rules()) & forbidden == {"WAIT"}
    assert "less `+wait` on Serverless" in AWS_PAGE.read_text()
