"""The RQ backend's Redis: django-rq's RQ_QUEUES is its one definition (django_rq.get_connection).

The same entry serves django-rq's dashboard, so it must name the JSON serializer our jobs are
written with (queues.rq.checks refuses any other).
"""

import threading

import django_rq
import rq.defaults
from django.conf import settings
from django_rq.connection_utils import filter_connection_params, get_redis_connection
from redis import AuthenticationError, Redis, RedisError
from redis.exceptions import NoPermissionError
from rq.serializers import JSONSerializer, resolve_serializer

from redis_endpoints import (
    CREDENTIALS_PROBLEM,
    UNTRUSTED_CERTIFICATE_HINT,
    credentials_misread,
    has_unreadable_database,
    reconnect_when_demoted,
    refused_certificate,
    refused_options,
    whitespace_problem,
)

from ..exceptions import QueueConfigurationError

JSON_SERIALIZER = "rq.serializers.JSONSerializer"
# Seconds a Redis call of the backend may take when RQ_QUEUES sets no socket timeout of its own
# (a URL's ?socket_timeout=…): a web request enqueues through it and must not hang.
DEFAULT_SOCKET_TIMEOUT = 5

_connections: dict[str, Redis] = {}
_lock = threading.Lock()


def queue_config(name: str) -> dict | None:
    """RQ_QUEUES[name], or None when RQ_QUEUES (or the queue) is missing."""
    return getattr(settings, "RQ_QUEUES", {}).get(name)


def connection_key(config: dict) -> str:
    """What tells two RQ_QUEUES entries' connections apart (django-rq's own filter)."""
    return repr(sorted(filter_connection_params(config).items(), key=lambda item: item[0]))


def endpoint_url(config: dict) -> str | None:
    """The Redis URL an RQ_QUEUES entry names, for the static cluster check and messages; None
    when it names none (Sentinel, a cache's client): only the live probe judges those."""
    if "URL" in config:
        return str(config["URL"])
    if "UNIX_SOCKET_PATH" in config:
        return f"unix://{config['UNIX_SOCKET_PATH']}"
    if "HOST" in config:
        host = str(config["HOST"])
        netloc = f"[{host}]" if ":" in host else host
        scheme = "rediss" if config.get("SSL") else "redis"  # django-rq connects over TLS then
        return f"{scheme}://{netloc}:{config.get('PORT', 6379)}/{config.get('DB', 0)}"
    return None


def connection_problem(config: dict) -> str | None:
    """Why django-rq cannot build a client from an RQ_QUEUES entry (a key it needs, an option
    redis-py refuses), or None; no network call. A Sentinel or a cache's client is left to the
    live probe."""
    if not {"URL", "HOST", "UNIX_SOCKET_PATH"} & config.keys():
        return None
    if "URL" in config and (problem := whitespace_problem(config["URL"])):
        return problem
    if "URL" in config and credentials_misread(str(config["URL"])):
        return CREDENTIALS_PROBLEM
    if "URL" in config and has_unreadable_database(str(config["URL"])):
        return (
            "its URL's path is no database number /0, /1, … (redis-py would quietly take a word"
            " for database 0, and refuse a negative one at the first command)"
        )
    # django-rq passes a socket entry's socket and DB alone: the server refused the client, or
    # let a password-less one in.
    socket_entry = {"URL", "USE_REDIS_CACHE"}.isdisjoint(config) and "UNIX_SOCKET_PATH" in config
    if socket_entry and (ignored := [key for key in ("USERNAME", "PASSWORD") if config.get(key)]):
        return (
            f"django-rq connects to UNIX_SOCKET_PATH without its {' and '.join(ignored)}"
            " (it passes the socket and DB alone); write the entry as a URL instead: unix://,"
            " then user:password@, the socket's path and ?db=N"
        )
    try:
        pool = get_redis_connection(config).connection_pool
        pool.make_connection()
    except KeyError as error:
        return f"django-rq needs its {error.args[0]!r} key too"
    except (TypeError, ValueError, RedisError) as error:
        return refused_options(endpoint_url(config) or "", error)
    if pool.connection_kwargs.get("decode_responses"):  # a URL's option, or REDIS_CLIENT_KWARGS'
        return (
            "its client would decode replies to text (decode_responses), where RQ reads bytes:"
            " the worker would die at start-up; drop it"
        )
    return None


def rq_keys() -> str:
    """The pattern of the keys RQ writes: rq:*, or since rq 3.0 its RQ_KEY_PREFIX's (an
    environment variable read when rq is imported)."""
    return f"{getattr(rq.defaults, 'RQ_KEY_PREFIX', 'rq')}:*"


def refusal_remedy(error: BaseException, entry: str) -> str | None:
    """What to do when the RQ Redis answered but refused `entry`'s client (its credentials, an
    ACL, its certificate), or None when it did not answer."""
    if refused_certificate(error):
        return UNTRUSTED_CERTIFICATE_HINT
    if wrong_database(error):
        return (
            f"Give {entry} a database number the server has: its URL's /N (or DB) below the"
            " server's `databases` (16 by default: /0 to /15; a serverless or cluster endpoint"
            " has /0 only)."
        )
    if isinstance(error, AuthenticationError):
        return (
            f"Fix the user and password of {entry}: redis://user:password@host:6379/0 (a Redis ACL"
            " user, or none for the default one; @ / ? # % in them written %40 %2F %3F %23 %25),"
            " or USERNAME and PASSWORD next to HOST."
        )
    if isinstance(error, NoPermissionError):
        keys = rq_keys()
        # Its workers' command channels too: since Redis 7 a new user has no channel at all
        # (acl-pubsub-default resetchannels), and a worker's subscription was refused.
        channels = keys.removesuffix("*") + "pubsub:*"
        # Not +@all: it let the user FLUSHALL (every database's keys), grant itself more (ACL
        # SETUSER), SHUTDOWN the server. Of @dangerous, RQ runs INFO only (the server's version).
        return (
            f"Allow the Redis ACL user of {entry} RQ's commands, keys ({keys}) and channels"
            f" ({channels}) and the cluster probe's keys (queues-probe:*):"
            f" ACL SETUSER name ~{keys} ~queues-probe:* &{channels} +@all -@dangerous +info."
        )
    return None


def wrong_database(error: BaseException) -> bool:
    """Whether `error` is the server refusing the connection's SELECT (a database number it does
    not have): every command then answers it, which the cluster probe took for cluster mode."""
    return isinstance(error, RedisError) and "DB index is out of range" in str(error)


def uses_json_serializer(config: dict) -> bool:
    """Whether the entry names RQ's JSONSerializer (django-rq's default is pickle)."""
    try:
        return resolve_serializer(config.get("SERIALIZER")) is JSONSerializer
    except Exception:  # a path that does not import: not the JSON serializer
        return False


def get_connection(queue_name: str, where: str) -> Redis:
    """django-rq's connection of RQ_QUEUES[queue_name], one per distinct connection per process.

    `where` names the caller's settings entry in the error raised when the queue is missing.
    """
    config = queue_config(queue_name)
    if config is None:
        raise QueueConfigurationError(
            f"{where} uses the RQ queue {queue_name!r}, which RQ_QUEUES does not define."
        )
    key = connection_key(config)
    connection = _connections.get(key)
    if connection is None:
        with _lock:
            connection = _connections.get(key)
            if connection is None:
                # Behind a stable endpoint, a failover leaves its open connections on the
                # demoted primary, which refuses every write: they reconnect.
                connection = reconnect_when_demoted(django_rq.get_connection(queue_name))
                pool_options = connection.connection_pool.connection_kwargs
                for option in ("socket_timeout", "socket_connect_timeout"):
                    if pool_options.get(option) is None:
                        pool_options[option] = DEFAULT_SOCKET_TIMEOUT
                _connections[key] = connection
    return connection
