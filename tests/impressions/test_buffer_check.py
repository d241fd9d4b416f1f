"""check --deploy probes the impression buffer: credentials it refuses, and a database number
on a cluster, are errors naming IMPRESSIONS_REDIS_URL; an unreachable one is no issue there."""

import shutil
import tempfile
import urllib.parse

import pytest
import redis
from django.core.checks import run_checks
from django.test import override_settings

import devservices
from impressions import recorder


def buffer_errors(url):
    with override_settings(IMPRESSIONS_REDIS_URL=url):
        found = run_checks(include_deployment_checks=True)
    return [message for message in found if message.id == "impressions.E008"]


@pytest.fixture
def password_redis():
    workdir = tempfile.mkdtemp(prefix="impressions-auth-")
    port = devservices.free_port()
    process = devservices.start_redis_server(port, workdir)
    devservices.redis_command(port, "CONFIG", "SET", "requirepass", "s3cret")
    yield port
    process.kill()
    process.wait(timeout=10)
    shutil.rmtree(workdir, ignore_errors=True)


def test_credentials_the_buffer_refuses_are_an_error_without_the_password(password_redis):
    port = password_redis
    for url in (f"redis://127.0.0.1:{port}/0", f"redis://:wrong@127.0.0.1:{port}/0"):
        [error] = buffer_errors(url)
        assert "refused the credentials of IMPRESSIONS_REDIS_URL" in error.msg
        assert "wrong" not in error.msg  # the URL's password is never shown
    assert buffer_errors(f"redis://:s3cret@127.0.0.1:{port}/0") == []


def test_a_database_number_on_a_cluster_is_an_error_and_each_view_s_loss_says_why(
    redis_cluster_url, caplog
):
    url = urllib.parse.urlsplit(redis_cluster_url)._replace(path="/3").geturl()
    [error] = buffer_errors(url)
    assert "names database 3, but its server is in cluster mode" in error.msg
    with override_settings(IMPRESSIONS_REDIS_URL=url):
        assert recorder.record_impressions("u:1", [1]).lost == 1
    assert "names database 3" in caplog.text


def test_a_database_number_the_server_does_not_have_is_an_error(password_redis):
    """A standalone server has `databases` of them (16 by default): /16 passed check --deploy,
    and every view then lost its impressions (DB index is out of range)."""
    port = password_redis
    [error] = buffer_errors(f"redis://:s3cret@127.0.0.1:{port}/16")
    assert "has no database 16" in error.msg
    assert "s3cret" not in error.msg
    assert buffer_errors(f"redis://:s3cret@127.0.0.1:{port}/15") == []


def test_an_unreachable_buffer_is_no_deploy_issue():
    port = devservices.free_port()
    assert buffer_errors(f"redis://127.0.0.1:{port}/0") == []


def test_a_cluster_told_it_is_none_loses_the_impressions_saying_which_setting(
    redis_cluster_url, caplog
):
    with override_settings(
        IMPRESSIONS_REDIS_URL=redis_cluster_url, IMPRESSIONS_REDIS_CLUSTER=False
    ):
        results = [recorder.record_impressions(f"u:{n}", [1, 2, 3]) for n in range(20)]
    assert sum(result.lost for result in results) > 0  # the keys of other nodes' slots: MOVED
    assert "IMPRESSIONS_REDIS_CLUSTER='false' denies: set it to 'auto' or 'true'" in caplog.text


@pytest.fixture
def own_redis():
    workdir = tempfile.mkdtemp(prefix="impressions-policy-")
    port = devservices.free_port()
    process = devservices.start_redis_server(port, workdir)
    yield port
    process.kill()
    process.wait(timeout=10)
    shutil.rmtree(workdir, ignore_errors=True)


def eviction_warnings(url):
    with override_settings(IMPRESSIONS_REDIS_URL=url):
        found = run_checks(include_deployment_checks=True)
    return [message for message in found if message.id == "impressions.W007"]


def test_a_buffer_that_evicts_any_key_when_full_is_a_deploy_warning(own_redis):
    # allkeys-* would drop pending counts (no expiry) silently; the others never take them.
    url = f"redis://127.0.0.1:{own_redis}/0"
    devservices.redis_command(own_redis, "CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    assert eviction_warnings(url) == []  # no maxmemory: the policy never applies
    devservices.redis_command(own_redis, "CONFIG", "SET", "maxmemory", "100mb")
    for policy in ("noeviction", "volatile-lru", "volatile-ttl"):
        devservices.redis_command(own_redis, "CONFIG", "SET", "maxmemory-policy", policy)
        assert eviction_warnings(url) == [], policy
    for policy in ("allkeys-lru", "allkeys-random"):
        devservices.redis_command(own_redis, "CONFIG", "SET", "maxmemory-policy", policy)
        [warning] = eviction_warnings(url)
        assert f"maxmemory-policy {policy}" in warning.msg
        assert warning.obj == "IMPRESSIONS_REDIS_URL"


def test_a_cluster_node_that_evicts_any_key_is_a_deploy_warning(redis_cluster_url):
    from impressions.redis_client import get_client

    with override_settings(IMPRESSIONS_REDIS_URL=redis_cluster_url):
        node = get_client(2.0).get_primaries()[-1]
        port = node.port
    before = devservices.redis_command(port, "CONFIG", "GET", "maxmemory-policy").split()[-1]
    assert not before.startswith("allkeys-")
    limit = devservices.redis_command(port, "CONFIG", "GET", "maxmemory").split()[-1]
    assert eviction_warnings(redis_cluster_url) == []
    devservices.redis_command(port, "CONFIG", "SET", "maxmemory-policy", "allkeys-lfu")
    devservices.redis_command(port, "CONFIG", "SET", "maxmemory", "1gb")
    try:
        [warning] = eviction_warnings(redis_cluster_url)
    finally:
        devservices.redis_command(port, "CONFIG", "SET", "maxmemory-policy", before)
        devservices.redis_command(port, "CONFIG", "SET", "maxmemory", limit)
    assert "maxmemory-policy allkeys-lfu" in warning.msg


def test_a_user_the_buffer_refuses_info_is_an_error_naming_the_cluster_setting(password_redis):
    # An ACL without @dangerous (a common hardened user) refuses INFO, which "auto" asks: every
    # view lost its impressions ("no permissions to run the 'info' command") and the deploy
    # checks, reading the refusal as an unreachable server, said nothing.
    port = password_redis
    admin = redis.Redis(host="127.0.0.1", port=port, password="s3cret")
    admin.execute_command(
        "ACL", "SETUSER", "imp", "on", ">imp-Pa55", "~{imp*", "+@all", "-@dangerous"
    )
    admin.close()
    url = f"redis://imp:imp-Pa55@127.0.0.1:{port}/0"
    [error] = buffer_errors(url)
    assert "'info'" in error.msg and "imp-Pa55" not in error.msg
    assert 'IMPRESSIONS_REDIS_CLUSTER = "false"' in error.hint
    with override_settings(IMPRESSIONS_REDIS_CLUSTER="false"):
        assert buffer_errors(url) == []
