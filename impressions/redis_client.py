"""The process's Redis clients for the buffer: standalone or cluster, built once from settings."""

import logging
import threading

import redis
from django.core.signals import setting_changed
from django.dispatch import receiver
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from redis_endpoints import cluster_endpoint_reason

from .conf import conf
from .reloads import reloads

logger = logging.getLogger(__name__)

_clients = {}
_lock = threading.Lock()
REQUEST_CLIENT = "request"  # the key under which _clients also holds the default-timeout client


def get_client(timeout=None):
    """The cached client (redis.Redis or RedisCluster); `timeout` defaults to the request timeout."""
    if timeout is None:
        # The request path's client, found without reading three settings each call; a change
        # of any of them resets the cache (see _on_setting_changed).
        client = _clients.get(REQUEST_CLIENT)
        if client is not None:
            return client
    key = (conf.REDIS_URL, conf.REDIS_CLUSTER, conf.REDIS_TIMEOUT if timeout is None else timeout)
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                # Not cached on failure: the next call tries again once Redis is back.
                client = _clients[key] = build_client(*key)
    if timeout is None:
        _clients[REQUEST_CLIENT] = client
    return client


def get_flush_client():
    """A client with the longer flush timeout: HGETALL of a large snapshot takes a while."""
    return get_client(conf.FLUSH_REDIS_TIMEOUT)


def is_cluster(client):
    return isinstance(client, RedisCluster)


def reset_clients(**_):
    """Forget cached clients (tests switch IMPRESSIONS_REDIS_URL with override_settings), and what the
    process knew about that Redis's de-duplication."""
    reloads.clear()
    with _lock:
        clients = list({id(client): client for client in _clients.values()}.values())
        _clients.clear()
    for client in clients:
        try:
            client.close()
        except Exception:  # a broken client still gets forgotten
            logger.debug("closing a Redis client failed", exc_info=True)


@receiver(setting_changed, dispatch_uid="impressions-reset-clients")
def _on_setting_changed(setting, **_):
    if setting.startswith("IMPRESSIONS_REDIS"):
        reset_clients()


def build_client(url, cluster_mode, timeout):
    # No retries: the record script is not idempotent (a retry after a lost reply would count
    # twice) and the request path must give up within its timeout.
    options = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    if cluster_mode == "auto":
        cluster_mode = "true" if is_cluster_mode(url, options) else "false"
    if cluster_mode == "true":
        return RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)


def is_cluster_mode(url, options):
    """Known cluster endpoints by name (no round trip), else ask the server (INFO cluster)."""
    if cluster_endpoint_reason(url):
        return True  # e.g. ElastiCache Serverless, whose INFO answers are not to be relied on
    probe = redis.Redis.from_url(url, **options)
    try:
        return bool(probe.info("cluster").get("cluster_enabled"))
    finally:
        probe.close()
