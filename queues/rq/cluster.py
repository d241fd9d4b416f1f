"""Tell whether a Redis/Valkey endpoint runs in cluster mode, which RQ cannot use.

RQ moves job ids between several keys in one MULTI/EXEC; on a cluster (ElastiCache Serverless is
always one) those keys hash to different slots and the worker dies with CROSSSLOT. We refuse such
an endpoint before RQ writes anything: first from the URL alone, then with a live probe.
"""

import contextlib
import secrets
import threading

import redis
from redis.crc import key_slot

from redis_endpoints import cluster_endpoint_reason as endpoint_reason
from redis_endpoints import redact

from ..exceptions import ClusterModeRedis
from .connection import wrong_database

REMEDY = (
    "RQ needs a standalone (non-cluster) Redis/Valkey: point the queue's RQ_QUEUES entry at one,"
    " or use the SQS backend (queues.sqs.backend.SQSBackend), which runs next to a cluster-mode"
    " impression buffer."
)


def cluster_endpoint_reason(url):
    """Why `url` is a known cluster-mode endpoint, or None; looks at the text only (no network)."""
    return endpoint_reason(url) if url else None


def _probe_keys():
    """Two throw-away keys in different hash slots (never rq:*)."""
    token = secrets.token_hex(8)
    first = f"queues-probe:{{{token}-a}}"
    for suffix in range(1, 64):
        second = f"queues-probe:{{{token}-{suffix}}}"
        if key_slot(second.encode()) != key_slot(first.encode()):
            return first, second
    raise AssertionError("unreachable: 63 hash tags all in one slot")


def probe_cluster_reason(connection):
    """Why the live server behind `connection` is unusable for RQ, or None. Fails closed."""
    # Only the server's error replies judge it; any other RedisError (unreachable, refused
    # credentials, a client option redis-py refuses) is raised to the caller, never taken for
    # cluster mode.
    try:
        info = connection.info("cluster")
    except redis.ResponseError as error:
        if wrong_database(error):
            # A refusal of the connection itself, reported as the other ones are.
            raise redis.ConnectionError(str(error)) from error
        info = {}  # INFO disabled or unknown to a proxy: the transaction probe decides.
    enabled = str(info.get("cluster_enabled", "")).strip() if isinstance(info, dict) else ""
    if enabled == "1":
        return "the server reports cluster_enabled:1 (INFO cluster)"
    # cluster_enabled:0 or no answer is not proof: a proxy in front of shards can say 0. A MULTI/EXEC
    # across two slots succeeds only on a single keyspace.
    first, second = _probe_keys()
    try:
        with connection.pipeline(transaction=True) as pipe:
            pipe.set(first, "1", ex=30)
            pipe.set(second, "1", ex=30)
            answer = pipe.execute()
    except redis.exceptions.NoPermissionError:
        raise  # an ACL that denies the probe's keys says nothing of the server's mode
    except redis.ResponseError as error:  # CROSSSLOT, MOVED, a proxy's refusal
        return f"a MULTI/EXEC across two hash slots failed ({error})"
    finally:
        with contextlib.suppress(redis.RedisError):
            connection.delete(first, second)
    if answer != [True, True]:
        return f"a MULTI/EXEC across two hash slots answered {answer!r}"
    return None


def refusal_message(url, reason):
    """The one paragraph a person reads when RQ is refused."""
    safe = redact(url) if url else "its RQ_QUEUES entry"
    return f"RQ cannot use the Redis at {safe}: {reason}. {REMEDY}"


_verified = set()
_verified_lock = threading.Lock()


def ensure_not_cluster(connection, url):
    """Raise ClusterModeRedis unless `connection` (to `url`, None when RQ_QUEUES names no URL) is a
    standalone Redis; probes once per connection and process."""
    if reason := cluster_endpoint_reason(url):
        raise ClusterModeRedis(refusal_message(url, reason))
    key = id(connection)
    if key in _verified:
        return
    with _verified_lock:
        if key in _verified:
            return
        # A server that cannot be reached or refuses the client raises to the caller, untouched.
        reason = probe_cluster_reason(connection)
        if reason:
            raise ClusterModeRedis(refusal_message(url, reason))
        _verified.add(key)
