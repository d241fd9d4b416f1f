"""RQ refuses cluster-mode Redis: a serverless URL without network, the real cluster by probing."""

import socket

import pytest
import redis
from django.core import checks
from django.tasks import task_backends
from rq.command import PUBSUB_CHANNEL_TEMPLATE

import devservices
from queues.exceptions import ClusterModeRedis
from queues.rq.cluster import probe_cluster_reason
from queues.rq.connection import refusal_remedy
from queues.rq.worker import RQWorker
from queues.runner import remedy_text
from tests.queues import tasks as queue_tasks
from tests.queues.rq.support import SERVERLESS, check_errors, rq_settings


def test_serverless_hostname_fails_manage_check_without_network():
    host = SERVERLESS.split("//")[1].split(":")[0]
    with pytest.raises(socket.gaierror):  # it does not even resolve: no network was needed
        socket.getaddrinfo(host, 6379)
    errors = check_errors(SERVERLESS)
    assert "queues.E001" in errors
    assert "SQS" in errors  # the hint names the way out


def test_serverless_hostname_refused_by_runworker_before_connecting(manage):
    result = manage("runworker", "--burst", env={"QUEUE_BACKEND": "rq", "RQ_REDIS_URL": SERVERLESS})
    assert result.returncode != 0
    assert "ElastiCache Serverless" in result.stderr
    assert "Traceback" not in result.stderr


def cluster_nodes(cluster_url):
    """Plain clients to every master of the test cluster."""
    first = redis.Redis.from_url(cluster_url)
    nodes = first.execute_command("CLUSTER", "NODES").decode().splitlines()
    addresses = [line.split()[1].split("@")[0] for line in nodes]
    return [redis.Redis(host=a.rsplit(":", 1)[0], port=int(a.rsplit(":", 1)[1])) for a in addresses]


def rq_keys_on(nodes):
    return [key for node in nodes for key in node.keys("rq:*")]


@pytest.mark.cluster
def test_live_probe_names_cluster_mode_and_passes_standalone(redis_cluster_url, settings):
    node = redis.Redis.from_url(redis_cluster_url)
    assert "cluster_enabled:1" in probe_cluster_reason(node)
    assert probe_cluster_reason(redis.Redis.from_url(settings.RQ_REDIS_URL)) is None


@pytest.mark.cluster
def test_check_deploy_and_runworker_refuse_a_cluster_node(redis_cluster_url, manage):
    env = {"QUEUE_BACKEND": "rq", "RQ_REDIS_URL": redis_cluster_url}
    nodes = cluster_nodes(redis_cluster_url)
    assert len(nodes) == 3

    assert check_errors(redis_cluster_url) == ""  # a plain check needs no network, sees nothing
    deploy_errors = check_errors(redis_cluster_url, deploy=True)
    assert "queues.E002" in deploy_errors and "cluster_enabled:1" in deploy_errors, deploy_errors

    worker = manage("runworker", "--burst", env=env)
    assert worker.returncode != 0
    assert "CommandError: RQ cannot use the Redis at" in worker.stderr
    assert "cluster" in worker.stderr and "SQSBackend" in worker.stderr
    assert "CROSSSLOT" not in worker.stderr and "Traceback" not in worker.stderr
    assert rq_keys_on(nodes) == []


@pytest.mark.cluster
def test_first_rq_connection_of_a_web_process_raises_clearly(redis_cluster_url, settings):
    for name, value in rq_settings(redis_cluster_url).items():
        setattr(settings, name, value)
    with pytest.raises(ClusterModeRedis, match="cluster_enabled:1"):
        queue_tasks.record_marker.enqueue("never")
    assert rq_keys_on(cluster_nodes(redis_cluster_url)) == []


def test_unreachable_rq_redis_fails_the_deploy_check_closed(settings):
    for name, value in rq_settings("redis://127.0.0.1:1/0?socket_timeout=1").items():
        setattr(settings, name, value)
    errors = checks.run_checks(include_deployment_checks=True, tags=[checks.Tags.compatibility])
    assert "queues.E003" in [error.id for error in errors]


def test_a_database_the_rq_redis_does_not_have_is_named_not_taken_for_cluster_mode(
    settings, manage
):
    # Every command, the probe's too, answered "DB index is out of range": reported as cluster
    # mode (queues.E002), and runworker died with a traceback.
    url = settings.RQ_REDIS_URL.rsplit("/", 1)[0] + "/99"  # Redis has 16 by default
    errors = check_errors(url, deploy=True)
    assert "queues.E002" not in errors, errors
    assert "(queues.E003)" in errors and "a database number the server has" in errors, errors
    result = manage("runworker", "--burst", env={"QUEUE_BACKEND": "rq", "RQ_REDIS_URL": url})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert (
        "DB index is out of range; give the backend's RQ_QUEUES entry a database" in result.stderr
    )


@pytest.fixture
def acl_redis(tmp_path):
    """A private Redis with two ACL users: `worker` (all keys, a password that needs
    %-encoding in a URL) and `narrow` (only RQ's rq:* keys)."""
    port = devservices.free_port()
    server = devservices.start_redis_server(port, tmp_path)
    for user, password, keys in (("worker", "s3cr/t@x", "~*"), ("narrow", "n", "~rq:*")):
        devservices.redis_command(port, "ACL", "SETUSER", user, "on", f">{password}", keys, "+@all")
    yield f"127.0.0.1:{port}/0"
    server.kill()
    server.wait(timeout=10)


def test_credentials_or_an_acl_the_rq_redis_refuses_say_so_naming_the_entry(acl_redis, settings):
    def deploy_errors(url):
        for name, value in rq_settings(url).items():
            setattr(settings, name, value)
        found = checks.run_checks(include_deployment_checks=True, tags=[checks.Tags.compatibility])
        return [error for error in found if error.id.startswith("queues.E")]

    assert deploy_errors(f"redis://worker:s3cr%2Ft%40x@{acl_redis}") == []
    # It said "could not reach the RQ Redis", whose hint was to run the checks where it is.
    [refused] = deploy_errors(f"redis://worker:wrong@{acl_redis}")
    assert refused.id == "queues.E003"
    assert "refused the client of RQ_QUEUES['default']" in refused.msg
    assert "Fix the user and password of RQ_QUEUES['default']" in refused.hint
    assert "wrong" not in refused.msg
    with pytest.raises(redis.AuthenticationError) as raised:
        RQWorker(task_backends["default"], burst=True).run()
    assert "user and password of the backend's RQ_QUEUES entry" in remedy_text(
        RQWorker, raised.value
    )
    # An ACL that denies the probe's keys was taken for cluster mode (queues.E002).
    [denied] = deploy_errors(f"redis://narrow:n@{acl_redis}")
    assert denied.id == "queues.E003"
    assert "ACL SETUSER" in denied.hint


def test_a_user_made_as_the_acl_hint_says_may_use_the_worker_s_channel(tmp_path):
    # Redis 7 gives a new ACL user no pub/sub channel (acl-pubsub-default resetchannels): made as
    # the hint said, the worker's command channel (rq:pubsub:<worker>) was refused, its thread
    # died with a traceback at each start, and RQ's commands to the worker went unheard.
    hint = refusal_remedy(redis.exceptions.NoPermissionError("NOPERM"), "RQ_QUEUES['default']")
    user, *rules = hint.split("ACL SETUSER ", 1)[1].rstrip(".").split()
    port = devservices.free_port()
    server = devservices.start_redis_server(port, tmp_path)
    try:
        devservices.redis_command(port, "ACL", "SETUSER", user, "on", ">p", *rules)
        connection = redis.Redis(port=port, username=user, password="p")
        channel = PUBSUB_CHANNEL_TEMPLATE % "worker-name"
        pubsub = connection.pubsub()
        pubsub.subscribe(channel)  # what the worker does at start
        confirmed = pubsub.get_message(timeout=5)
        connection.publish(channel, "{}")  # what RQ's commands (send_shutdown_command) do
        pubsub.close()
    finally:
        server.kill()
        server.wait(timeout=10)
    assert confirmed["type"] == "subscribe"
