"""Plain helpers of the impressions tests (fixtures are in conftest.py)."""

import os
import pickle
import re
import signal
import time

import pytest
import redis
from django.conf import settings
from django.db import connections
from django.tasks import default_task_backend
from django.test import Client
from redis.cluster import RedisCluster

from impressions import flush as flush_module
from impressions import keys, recorder, schedule
from impressions.api import ping
from impressions.conf import SETTINGS, conf
from impressions.recorder import BufferStatus
from impressions.reloads import reloads

OBJECT_ID = re.compile(r"-?[0-9]+")

# The record call's time budget the app ships with (50 ms). settings.test gives every other test
# 2 s (a reply may take longer than 50 ms on the loaded test machine); the tests of the budget
# itself, and of what a slow Redis costs, set this one.
APP_REDIS_TIMEOUT = SETTINGS["IMPRESSIONS_REDIS_TIMEOUT"].default


def group_of(field):
    """The keys.GROUPS index of a field (text), as the record script picks its hash: by the block
    of keys.BLOCK ids its object id is in, modulo 10; the last group for anything else."""
    object_id = field.partition(":")[0]
    if not OBJECT_ID.fullmatch(object_id):
        return len(keys.GROUPS) - 1
    return int(object_id) // keys.BLOCK % 10


DUMMY_TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}

# ElastiCache Serverless (tests/impressions/test_serverless_commands.py): whole commands it
# refuses (those of any ElastiCache cache, and those of Serverless only).
REFUSED = (
    "BGREWRITEAOF", "BGSAVE", "CONFIG", "DEBUG", "MIGRATE", "REPLICAOF", "SAVE", "SLAVEOF",
    "FCALL", "FCALL_RO", "FUNCTION", "KEYS", "LASTSAVE", "LATENCY", "MEMORY", "MONITOR", "MOVE",
    "OBJECT", "PFDEBUG", "PFSELFTEST", "PSUBSCRIBE", "PUNSUBSCRIBE", "SLOWLOG", "SWAPDB", "WAIT",
)  # fmt: skip
# Subcommands Serverless refuses, as ACL rules of the default user (set once the cluster is made:
# making it takes CLUSTER MEET, ADDSLOTS…). ACL SETUSER last: the rules are set in one call.
REFUSED_SUBCOMMANDS = (
    "client|caching", "client|getredir", "client|id", "client|info", "client|kill",
    "client|list", "client|no-evict", "client|pause", "client|tracking", "client|trackinginfo",
    "client|unblock", "client|unpause", "cluster|addslots", "cluster|addslotsrange",
    "cluster|bumpepoch", "cluster|count-failure-reports", "cluster|delslots",
    "cluster|delslotsrange", "cluster|failover", "cluster|flushslots", "cluster|forget",
    "cluster|links", "cluster|meet", "cluster|setslot", "pubsub|numpat", "script|kill",
    "acl|deluser", "acl|load", "acl|log", "acl|save", "acl|setuser",
)  # fmt: skip

# The start of a script run on a fresh SQLite file (the on_sqlite fixture): the tables migrated,
# five posts, their ids in `ids`.
SQLITE_FIVE_POSTS = """
import json

import django
django.setup()
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection

call_command("migrate", run_syncdb=True, verbosity=0)
from casusult.models import Post

assert connection.vendor == "sqlite", connection.vendor
author = get_user_model().objects.create_user("author")
ids = [p.id for p in Post.objects.bulk_create(Post(author=author, body=str(n)) for n in range(5))]
"""


def flush_redis(client):
    """Empty only the impressions' Redis database (a cluster: every primary of the test cluster),
    and forget the reloads this process knew Redis de-duplicates: it no longer does."""
    reloads.clear()
    if isinstance(client, RedisCluster):
        client.flushdb(target_nodes=RedisCluster.PRIMARIES)
    else:
        client.flushdb()


def scan_all(client, pattern=None):
    """The keys (text) that `pattern` matches (all without one), on every primary of a cluster."""
    if isinstance(client, RedisCluster):
        found = client.scan_iter(match=pattern, count=1000, target_nodes=RedisCluster.PRIMARIES)
    else:
        found = client.scan_iter(match=pattern, count=1000)
    return [key.decode() for key in found]


def with_option(url, option):
    """`url` with one more query option."""
    return f"{url}{'&' if '?' in url else '?'}{option}"


def ping_or_fail(url):
    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except redis.RedisError as error:
        pytest.fail(
            f"Redis at {url} is not reachable ({error}): start it with `make test`"
            " (it starts redis-server) or point REDIS_URL at a running Redis."
        )


def recount_buffer(client):
    """The BufferStatus counted from every field of the buffer's keys, as the old full scan did.

    Read in two pipelines (the keys, then the snapshots they name; a cluster's pipeline sends
    each node its keys), not one round trip a key: the same reads, a few hundred per call.
    """
    pending_keys = [
        [keys.pending_key(shard), *keys.pending_group_keys(shard)] for shard in range(conf.SHARDS)
    ]
    pipe = client.pipeline(transaction=False)
    for shard in range(conf.SHARDS):
        for key in pending_keys[shard]:
            pipe.hvals(key)
        pipe.smembers(keys.snapshots_key(shard))
        pipe.get(keys.lost_key(shard))
        pipe.hkeys(keys.set_aside_key(shard))
    pipe.exists(keys.guard_key())
    answers = iter(pipe.execute())
    pending = entries = reported_lost = set_aside = 0
    snapshots = client.pipeline(transaction=False)
    for shard in range(conf.SHARDS):
        for _ in pending_keys[shard]:
            values = next(answers)
            pending += sum(int(value) for value in values)
            entries += len(values)
        for flush_id in next(answers):
            for snapshot, _ in keys.snapshot_hashes(shard, flush_id.decode()):
                snapshots.hvals(snapshot)
        reported_lost += int(next(answers) or 0)
        set_aside += len(next(answers))
    scheduled = bool(next(answers))
    in_snapshots = sum(int(value) for values in snapshots.execute() for value in values)
    return BufferStatus(pending, entries, reported_lost, in_snapshots, scheduled, set_aside)


def reset_loss_counter():
    recorder.lost.requests = recorder.lost.impressions = recorder.lost.unreported = 0
    recorder.lost.not_logged, recorder.lost.next_line, recorder.lost.held = {}, {}, 0


def scheduled_flushes():
    return list(default_task_backend.results)


def viewer_in(shard, taken=()):
    """A new viewer key whose impressions land in `shard`."""
    n = 0
    while keys.shard_of(f"late:{n}") != shard or f"late:{n}" in taken:
        n += 1
    return f"late:{n}"


def forget_parent_connections():
    """In a forked child: take fresh database connections, leaving the parent's sockets alone.
    The parent's driver connections are kept referenced until os._exit: mysqlclient's, once
    collected, would say goodbye (COM_QUIT) on the socket the parent still uses."""
    for connection in connections.all(initialized_only=True):
        _parent_connections.append(connection.connection)
        connection.connection = None


_parent_connections = []


def killed_in_a_child(module, name, action, when=None):
    """Run `action()` in a forked process of its own that SIGKILLs itself where it calls
    `module.name` (with `when`, at the first call whose arguments `when` accepts; the calls
    before go through): a process dying right there, as fast as a fork (no interpreter to start).
    The child takes fresh database connections; the Redis clients take their own after a fork."""
    original = getattr(module, name)

    def die_there(*args, **kwargs):
        if when is None or when(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    pid = os.fork()
    if pid == 0:  # the child: never returns into the test run
        try:
            forget_parent_connections()
            setattr(module, name, die_there)
            action()
        finally:
            os._exit(1)
    status = wait_for_child(pid, CHILD_TIMEOUT)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
        f"the child was not killed at {module.__name__}.{name} (status {status})"
    )


def result_in_a_child(action):
    """action()'s result (pickled through a pipe), run in a forked process of its own: another
    process, with memory of its own from the fork on, as fast as a fork. The child takes fresh
    database connections; the Redis clients take their own after a fork."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the test run
        code = 1
        try:
            os.close(read)
            forget_parent_connections()
            with os.fdopen(write, "wb") as pipe:
                pipe.write(pickle.dumps(action()))
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        status = wait_for_child(pid, CHILD_TIMEOUT)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"the child failed ({status})"
        return pickle.loads(pipe.read())


# A forked child of a multi-threaded test process could deadlock on a lock a parent's thread held
# at the fork: it is killed after this many seconds and the test fails, not the whole run hangs.
CHILD_TIMEOUT = 60


def wait_for_child(pid, timeout):
    """The wait status of child `pid`; SIGKILLs it first if it has not ended within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"the forked child {pid} did not end within {timeout} s")
        time.sleep(0.01)


class PrivateRedis:
    def __init__(self, process, url):
        self.process = process
        self.url = url

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def database_url_for_subprocess(connection):
    """A DATABASE_URL pointing a subprocess at the test database this session created."""
    params = connection.settings_dict
    scheme, default_user, default_port = {"mysql": ("mysql", "root", 3306)}.get(
        connection.vendor, ("postgres", "postgres", 5432)
    )
    user = params.get("USER") or default_user
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    host = params.get("HOST") or "127.0.0.1"
    port = params.get("PORT") or default_port
    return f"{scheme}://{user}{password}@{host}:{port}/{params['NAME']}"


def subprocess_env(connection, **extra):
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "settings.test",
        "DATABASE_URL": database_url_for_subprocess(connection),
        "REDIS_URL": settings.IMPRESSIONS_REDIS_URL,
        **extra,
    }


def fail_a_flush_after_its_snapshot(monkeypatch):
    """Run a flush that takes its snapshot and fails before applying it (its counts wait there)."""
    from impressions import flush as flush_module

    def die(name):
        if name == "after-snapshot":
            raise RuntimeError("a flush taken, not applied")

    monkeypatch.setattr(flush_module, "checkpoint", die)
    with pytest.raises(RuntimeError):
        flush_module.flush_pending()
    monkeypatch.undo()


def every_buffer_path(ids, monkeypatch):
    """Record `ids` (a cookie-less viewer too, by the timeline), the status reads, a scheduled
    flush, one by hand and a full Redis's: every way the app reaches the buffer, three viewers'
    and the timeline's impressions applied."""
    monkeypatch.setattr(schedule.full_redis, "next_check", 0.0)
    schedule.backoff.succeeded()
    recorder.record_impressions("u:1", ids)
    assert Client(REMOTE_ADDR="192.0.2.7").get("/api/timeline/").status_code == 200
    recorder.buffer_status()
    ping()
    recorder.pending_counts(ids)
    flush_module.flush_pending(window="w1")
    recorder.record_impressions("u:2", ids)
    flush_module.flush_pending(keep_schedule=True)
    recorder.record_impressions("u:3", ids)
    assert schedule.full_redis.refused()  # as after a refused record call
    flush_module.flush_pending(part=0, parts=1, keep_schedule=True)
