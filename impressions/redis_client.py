"""The process's Redis clients for the buffer: standalone or cluster, built once from settings."""

import functools
import os
import threading
import time
import weakref
from urllib.parse import parse_qs, urlsplit

import hiredis
import redis
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.connection import parse_url
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from redis_endpoints import (
    CREDENTIALS_PROBLEM,
    cluster_endpoint_reason,
    credentials_misread,
    has_unreadable_database,
    once_more_when_demoted,
    reconnect_when_demoted,
    redacting_logger,
    refused_options,
    whitespace_problem,
    without_cluster_flag,
)

from .conf import conf
from .holdoff import holdoff
from .reloads import reloads

logger = redacting_logger(__name__)

# What a Redis that does not answer raises: RedisClusterException (a cluster client that has
# lost its nodes) is no RedisError.
REDIS_FAILURES = (RedisError, RedisClusterException)

# ElastiCache Serverless refuses a request with more arguments than this, the command's name
# included ("Valkey and Redis OSS configuration and limits", client-query-buffer-limit): every
# command whose arguments grow with its input is sent in parts that stay within it.
MAX_ARGS = 3999

_clients = {}
# (what made it, the lock of _clients): _clients_lock() gives the lock.
_lock = (threading.Lock, threading.Lock())
REQUEST_CLIENT = "request"  # the key under which _clients also holds the default-timeout client
_threads = threading.local()  # each thread's own connection for run_script (see _thread_state)


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
        with _clients_lock():
            client = _clients.get(key)
            if client is None:
                # Not cached on failure: the next call tries again once Redis is back.
                client = _clients[key] = build_client(*key)
    if timeout is None:
        _clients[REQUEST_CLIENT] = client
    return client


def get_flush_client():
    """A client with the longer flush timeout: reading a large snapshot takes a while."""
    return get_client(conf.FLUSH_REDIS_TIMEOUT)


def is_cluster(client):
    return isinstance(client, RedisCluster)


def primaries(client):
    """{name: client} of each primary of the buffer's server: a cluster's nodes ("host:port"),
    or the standalone client ("")."""
    if is_cluster(client):
        return {node.name: client.get_redis_connection(node) for node in client.get_primaries()}
    return {"": client}


def eviction_policies(client):
    """{node: maxmemory_policy} of the buffer's server (each primary of a cluster), from INFO
    memory (CONFIG GET is often disabled on managed servers); a node whose INFO names none
    (ElastiCache Serverless answers a reduced INFO), or with no maxmemory, is left out."""
    policies = {}
    for name, node in primaries(client).items():
        memory = node.info("memory")
        policy = memory.get("maxmemory_policy")
        if policy and memory.get("maxmemory") != 0:  # 0: no limit, the policy never applies
            policies[name] = str(policy)
    return policies


def reset_clients(**_):
    """Forget cached clients (tests switch IMPRESSIONS_REDIS_URL with override_settings), what the
    process knew about that Redis's de-duplication, and a hold-off after its slow failure."""
    reloads.clear()
    holdoff.reset()
    with _clients_lock():
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
    url = without_cluster_flag(url)
    if cluster_mode == "true":
        if database := database_of(url):
            raise ImproperlyConfigured(
                f"IMPRESSIONS_REDIS_URL names database {database}, but its server is in"
                " cluster mode, which has database 0 only: drop the /N (or ?db=N) from the URL."
            )
        if redis.VERSION < (6,):
            # redis-py 5's cluster client retries a command after a lost connection this many
            # times, whatever `retry` says (6 takes it from `retry`, and deprecates this).
            options["cluster_error_retry_attempts"] = 0
        return RedisCluster.from_url(url, **options)
    # Behind a stable endpoint (ElastiCache's primary endpoint, a DNS name, a proxy), a failover
    # leaves the open connections on the demoted primary, which refuses every write.
    return reconnect_when_demoted(redis.Redis.from_url(url, **options))


def database_of(url):
    """The database number redis-py selects for `url`: its ?db= if given, else its /N; 0 if none.

    redis-py's own parsing, so that the cluster-mode refusal judges the database the client
    would really select (the query wins over the path there).
    """
    try:
        return parse_url(url).get("db", 0)
    except ValueError:
        return 0  # a db= that is no number: redis-py refuses the URL when it connects


# Query options redis-py would let win over the app's own timeouts: the request path's
# (IMPRESSIONS_REDIS_TIMEOUT, 50 ms) and the flush's (IMPRESSIONS_FLUSH_REDIS_TIMEOUT).
APP_OWNED_OPTIONS = ("socket_timeout", "socket_connect_timeout")


def url_options_problem(url):
    """Why redis-py cannot build a connection from `url` (an option it does not take, a value it
    cannot read), or why the app refuses it (an option that would override its own), or None;
    no network call."""
    if problem := whitespace_problem(url):
        return problem
    if credentials_misread(url):
        return CREDENTIALS_PROBLEM
    query = parse_qs(urlsplit(url).query)
    if has_unreadable_database(url):  # redis-py would quietly use database 0
        return "its path is no database number /0, /1, …"
    if owned := [name for name in APP_OWNED_OPTIONS if name in query]:
        return (
            f"its query option {owned[0]}= would override the app's own timeouts: drop it"
            " and set IMPRESSIONS_REDIS_TIMEOUT and IMPRESSIONS_FLUSH_REDIS_TIMEOUT"
        )
    if "decode_responses" in query:  # the scripts' and the flush's replies are read as bytes
        return (
            "its query option decode_responses= would hand the app text replies where it reads"
            " bytes, and every impression and flush would fail: drop it"
        )
    try:
        redis.Redis.from_url(without_cluster_flag(url)).connection_pool.make_connection()
    except (TypeError, ValueError, RedisError) as error:
        return refused_options(url, error)
    return None


def is_cluster_mode(url, options):
    """Known cluster endpoints by name (no round trip), else ask the server (INFO cluster)."""
    if cluster_endpoint_reason(url):
        return True  # e.g. ElastiCache Serverless, whose INFO answers are not to be relied on
    probe = redis.Redis.from_url(without_cluster_flag(url), **options)
    try:
        return bool(probe.info("cluster").get("cluster_enabled"))
    except ResponseError as error:
        if "cluster mode" in str(error):  # "SELECT is not allowed in cluster mode": a /N URL
            return True
        raise
    finally:
        probe.close()


def run_script(client, registered, script_keys, args):
    """EVALSHA of a registered redis-py Script in one round trip, loading it on NOSCRIPT.

    The request path's call, with fewer client steps than client.evalsha(): redis-py's pool,
    retry and observability layers and its per-argument packing cost this process more CPU
    than the call's own work. It goes out on this thread's own connection to the server (on a
    cluster, to the node of the keys' slot), packed by hiredis. Same timeout, no retries: a
    failed call raises, and its connection is dropped, never read again; but for a standalone
    server's refusal as a demoted primary, which wrote nothing: tried once more.
    """
    try:
        if isinstance(client, RedisCluster):  # follows a failover itself (MOVED)
            return _call_loading(client, registered, script_keys, args)
        # A failover's demoted primary refuses the script at its first write, so it wrote nothing.
        call = functools.partial(_call_loading, client, registered, script_keys, args)
        return once_more_when_demoted(client, call)
    finally:
        if green_threads():
            release_thread_connections()


def green_threads():
    """Whether gevent or eventlet has monkey-patched threading: each "thread" is a greenlet then,
    and a gunicorn gevent worker runs one per open client connection (up to its
    worker_connections, 1,000), alive as long as the connection is kept open. Kept by such
    greenlets, connections filled the pool (100) and every later call was lost: a greenlet hands
    its connection back after each call, as an ASGI request's thread does (api.record)."""
    return threading.local.__module__ != "_thread"


def _thread_state():
    """This thread's (or greenlet's) local state. Made again when threading was monkey-patched
    since: an app loaded before the patching (gunicorn --preload, then a gevent worker) made an
    unpatched one, which every greenlet of the process would share, and the connection in it."""
    global _threads
    if type(_threads) is not threading.local:
        _threads = threading.local()
    return _threads


def _clients_lock():
    """The lock of the client cache. Made again when threading was monkey-patched since: built
    under it, a client may ask the server (IMPRESSIONS_REDIS_CLUSTER "auto"), and a greenlet
    yields there; another greenlet waiting on a lock made before the patching (gunicorn
    --preload, then a gevent worker) blocked the process's only thread: the worker froze."""
    global _lock
    made_by, lock = _lock
    if made_by is not threading.Lock:
        _lock = made_by, lock = threading.Lock, threading.Lock()
    return lock


def _call_loading(client, registered, script_keys, args):
    try:
        return _call(client, registered.sha, script_keys, args)
    except NoScriptError:
        registered.sha = client.script_load(registered.script)
        return _call(client, registered.sha, script_keys, args)


def _call(client, sha, script_keys, args):
    command = ("EVALSHA", sha, len(script_keys), *script_keys, *args)
    if not isinstance(client, RedisCluster):
        return _send(_thread_connection(client), *command)
    state = _thread_state()
    if getattr(state, "failed_on", None) is client:
        # This thread's last call lost its connection: this one goes the cluster client's way,
        # which refreshes the slots and nodes when it meets that error again.
        state.failed_on = None
        return client.execute_command(*command)
    try:
        return _call_node(client, script_keys[0], command)
    except (RedisConnectionError, RedisTimeoutError, OSError):
        state.failed_on = client
        raise


# MOVED redirections one call follows at most, as redis-py's cluster client (its
# RedisClusterRequestTTL): more, and the slots keep moving faster than the call.
MAX_MOVED = 16
# Between two calls that a slot's migration refused (TRYAGAIN), within the call's timeout.
TRYAGAIN_PAUSE = 0.005


def _call_node(client, key, command, pause=TRYAGAIN_PAUSE):
    """`command` on the thread's connection to the node of `key`'s slot, following MOVED and ASK
    and trying again on TRYAGAIN (`pause` seconds apart) until the connection's timeout;
    CLUSTERDOWN raises.

    Not the cluster client's way: it sleeps 50 ms between its last 8 of 16 attempts on TRYAGAIN
    (250 ms on CLUSTERDOWN, then raises): during a slot's migration or a failover, a request
    held up to half a second, for impressions lost all the same. A refusal means the script did
    not run: the call counts once at most.
    """
    node, connection = _route(client, key)
    asking, deadline, moved = False, None, 0
    while True:
        if connection is None:
            connection = _thread_connection(client.get_redis_connection(node))
        if deadline is None:
            deadline = time.monotonic() + (connection.socket_timeout or 0)
        try:
            return _send(connection, *command, asking=asking)
        except MovedError as error:
            # The slot is another node's now: the cluster client's map learns it too.
            error.host = error.host or node.host
            _learn_moved(client.nodes_manager, error)
            node, asking, moved, refusal = _redirected_node(client, error), False, moved + 1, error
        except AskError as error:  # the slot is migrating, the keys are on the importing node
            error.host = error.host or node.host
            node, asking, refusal = _redirected_node(client, error), True, error
        except TryAgainError as error:
            # A slot migrating with some of the call's keys on each side: once its last keys
            # move (milliseconds, for most slots), the call goes through.
            time.sleep(pause)
            node, asking, refusal = node_of(client, key), False, error
        connection = None
        if moved >= MAX_MOVED or time.monotonic() >= deadline:
            raise refusal
        if node is None:  # a node the cluster client does not know yet: its way finds it
            return client.execute_command(*command)


# Between two calls of the flush that a slot's migration refused (call_in_slot): a snapshot
# script is a few kB, sent again each time.
FLUSH_TRYAGAIN_PAUSE = 0.05


def refused_by_slot(error):
    """Whether `error` is a cluster's refusal of a command because its slot is moving or moved
    (MOVED, ASK, TRYAGAIN), given before the command ran, so that it may be sent again: a
    cluster pipeline's command gets redis-py's ClusterError "TTL exhausted" once its 16 attempts
    met nothing else (RedisCluster._execute_command)."""
    if isinstance(error, (TryAgainError, AskError, MovedError)):  # MovedError is an AskError
        return True
    return isinstance(error, ClusterError) and "TTL exhausted" in str(error)


def call_in_slot(client, key, command):
    """`command` (its keys in `key`'s slot) on the cluster node that serves that slot, following
    MOVED and ASK and trying again on TRYAGAIN until the client's timeout (the flush's:
    IMPRESSIONS_FLUSH_REDIS_TIMEOUT), then raising the last refusal: for a flush's call that a
    slot's migration refused (refused_by_slot), which did not run."""
    return _call_node(client, key, command, pause=FLUSH_TRYAGAIN_PAUSE)


def _learn_moved(manager, error):
    if hasattr(manager, "move_slot"):
        manager.move_slot(error)
    else:  # older redis-py (5.3): the slots are updated at the next lookup
        manager.update_moved_exception(error)


def _route(client, key):
    """(the primary of `key`'s slot, this thread's connection to it), the request path's first
    try. Kept per slot for the thread and used while the cluster client's map of the slots
    still names that node (a MOVED, a refreshed map: looked up again): the lookup through the
    client (its slot map's lock, its deprecation wrapper, the thread's weak map of connections)
    was a tenth of a first view's CPU here."""
    slot = slot_of(key)
    held = _held_connections()
    route = held.routes.get(slot)
    if route is not None:
        node, node_client, connection = route
        serving = client.nodes_manager.slots_cache.get(slot)
        if (
            serving
            and serving[0] is node
            and node.redis_connection is node_client
            and connection.pid == os.getpid()
        ):
            return node, connection
    node = node_of(client, key)
    node_client = client.get_redis_connection(node)
    connection = _thread_connection(node_client)
    held.routes[slot] = (node, node_client, connection)
    return node, connection


def _redirected_node(client, error):
    host, port = client.nodes_manager.remap_host_port(error.host, error.port)
    return client.get_node(host=host, port=port)


class ThreadConnections:
    """One thread's connection per client, handed back to the clients' pools when the thread
    ends: ASGI (each request's sync work) and runserver run a thread per request, whose kept
    connections would otherwise fill the pool (100) and lose every later call."""

    def __init__(self):
        self.by_client = weakref.WeakKeyDictionary()
        # {slot: (node, its client, the connection)} of a cluster's (_route); the connections
        # are by_client's, forgotten with them.
        self.routes = {}
        weakref.finalize(self, release_all, self.by_client)


def release_all(by_client):
    # Popped, not just released: released twice, a connection another thread took meanwhile
    # would go back to the pool while in use.
    while by_client:
        client, connection = by_client.popitem()
        client.connection_pool.release(connection)


def release_thread_connections():
    """Hand this thread's kept connections back to their pools now: for a thread that ends
    with its request (ASGI), whose connection would otherwise stay taken until then."""
    held = getattr(_thread_state(), "connections", None)
    if held is None:
        return
    try:
        held.routes.clear()
        release_all(held.by_client)
    except Exception:  # record() never raises into the view
        logger.exception("handing a Redis connection back to its pool failed")


def _thread_connection(client):
    """This thread's connection from `client`'s pool, kept while the thread lives (the pool
    still closes it with the client); a forked process takes its own."""
    held = _held_connections()
    connection = held.by_client.get(client)
    if connection is None or connection.pid != os.getpid():
        connection = held.by_client[client] = client.connection_pool.get_connection()
    return connection


def _held_connections():
    state = _thread_state()
    held = getattr(state, "connections", None)
    if held is None:
        held = state.connections = ThreadConnections()
    return held


def _send(connection, *command, asking=False):
    # As the pool checks a connection it hands out: data waiting (or the end of the stream)
    # before we asked means the server closed it or a reply is stale; start on a fresh one.
    # `asking`: an ASKING first, in the same packet (a cluster node importing the slot).
    try:
        stale = connection.can_read()
    except (RedisConnectionError, OSError):
        stale = True
    if stale:
        connection.disconnect()
    try:
        packed = [hiredis.pack_command(command)]
        if asking:
            packed.insert(0, hiredis.pack_command(("ASKING",)))
        connection.send_packed_command(packed, check_health=False)
        if asking:
            connection.read_response()  # +OK
        return connection.read_response()
    except ResponseError:
        raise  # an error reply, read whole: the connection is in step
    except BaseException:
        connection.disconnect()  # a reply may still come: never read it as the next one's
        raise


def node_of(cluster, key):
    """The primary that serves `key`'s slot, from the cluster client's map of the slots."""
    return cluster.nodes_manager.get_node_from_slot(slot_of(key))


def slot_of(key):
    """The cluster slot of a key, remembered per hash tag (every key of a call shares one)."""
    start = key.find("{")
    end = key.find("}", start + 1)
    if start < 0 or end <= start + 1:
        return key_slot(key.encode())
    return _tag_slot(key[start : end + 1])


@functools.lru_cache(maxsize=4096)
def _tag_slot(tag):
    return key_slot(tag.encode())
