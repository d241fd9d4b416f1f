"""The record path's raw limits: our Lua script from plain redis-py, and redis-benchmark."""

import csv
import io
import shutil
import time

from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from . import pinning
from .harness import ContenderFailed, format_rate
from .targets import host_port_db

BENCHMARK_REQUESTS = 20_000


def _impressions():
    try:
        from impressions import keys, recorder, scripts
        from impressions.conf import conf
    except ImportError as error:
        raise ContenderFailed(f"the impressions app is not available ({error})") from None
    return keys, recorder, scripts, conf


class RawRecorder:
    """Sends exactly the keys and arguments ours sends, from a plain client: no Django at all,
    the script loaded beforehand and called with redis-py's leanest public call, evalsha().

    The client has ours' options (the request timeout, no retries), so a slow call fails alike.
    """

    def __init__(self, url, cluster=False, timeout=None):
        self.url = url
        self.cluster = cluster
        self.timeout = timeout
        self._client = self._sha = None

    @property
    def client(self):
        if self._client is None:
            import redis
            from redis.cluster import RedisCluster

            _keys, _recorder, scripts, conf = _impressions()
            timeout = conf.REDIS_TIMEOUT if self.timeout is None else self.timeout
            options = {
                "socket_timeout": timeout,
                "socket_connect_timeout": timeout,
                "retry": Retry(NoBackoff(), 0),
            }
            kind = RedisCluster if self.cluster else redis.Redis
            client = kind.from_url(self.url, **options)
            self._sha = client.script_load(scripts.RECORD)  # on every node of a cluster
            self._client = client  # only once the script is loaded: a timeout tries it again
        return self._client

    @property
    def sha(self):
        self.client  # noqa: B018  (loads the script)
        return self._sha

    def calls(self, requests):
        """[(keys, args, posts)] for [(viewer key, post ids)], built by the recorder's own code."""
        keys, recorder, _scripts, _conf = _impressions()
        day = recorder.moment_of(None)[1]
        out = []
        for viewer_key, post_ids in requests:
            script_keys, args = recorder.record_call(
                keys.shard_of(viewer_key), viewer_key, post_ids, "", day, guard=not self.cluster
            )
            out.append((script_keys, args, len(post_ids)))
        return out

    def call(self, item):
        """EVALSHA one prepared call: (impressions counted, impressions lost to an error)."""
        script_keys, args, posts = item
        try:
            return self._client.evalsha(self._sha, len(script_keys), *script_keys, *args)[0], 0
        except RedisError:
            return 0, posts

    def replay(self, calls):
        """EVALSHA each call; the per-call latencies."""
        self.client  # noqa: B018  (connects and registers the script, untimed)
        call = self.call
        latencies = []
        for item in calls:
            start = time.perf_counter()
            call(item)
            latencies.append(time.perf_counter() - start)
        return latencies


def parse_csv(text):
    """redis-benchmark --csv rows as dicts (the header repeats once per test; --cluster prints
    its nodes first)."""
    rows = [row for row in csv.reader(io.StringIO(text)) if len(row) >= 7 and row[0] != "test"]
    return [
        {"test": row[0], "rps": float(row[1]), "p50_ms": float(row[4]), "p99_ms": float(row[6])}
        for row in rows
    ]


def redis_benchmark(
    url, clients, *command, requests=BENCHMARK_REQUESTS, cluster=False, cpus=None, pinned=None
):
    """redis-benchmark against `url` (host, port, db); --cluster: a node of the cluster.

    `cpus`: run it on those CPUs only (checked in /proc; pinned(line) hears what was read)."""
    if not url.startswith("redis://"):
        raise ContenderFailed(f"redis-benchmark is only run against redis:// URLs, not {url}")
    if not shutil.which("redis-benchmark"):
        raise ContenderFailed("redis-benchmark is not on PATH (apt-get install redis-tools)")
    host, port, db = host_port_db(url)
    argv = ["redis-benchmark", "-h", host, "-p", str(port), "-n", str(requests)]
    argv += ["-c", str(clients), "-r", "1000000", "--csv"]
    argv += ["--cluster"] if cluster else ["--dbnum", db]
    completed, checked = pinning.run(argv + [str(part) for part in command], cpus)
    if checked and pinned:
        pinned(checked)
    if completed.returncode != 0 or not completed.stdout.strip():
        message = (completed.stderr or completed.stdout).strip()[:200]
        raise ContenderFailed(f"redis-benchmark failed: {message}")
    return parse_csv(completed.stdout)


def record_command(sha, page, cluster, reload=False):
    """EVALSHA of our RECORD script as redis-benchmark sends it: a fresh viewer and fresh posts
    per call (__rand_int__), or with `reload` the same viewer and page every time.

    The keys and arguments are the recorder's own (record_call), with its hash tags replaced by
    `{tag}`: redis-benchmark --cluster turns that into a tag that lives on each client's node;
    without --cluster it stays one plain tag.
    """
    keys, recorder, _scripts, _conf = _impressions()
    viewer = "u:reload" if reload else "u:__rand_int__"
    posts = [str(100 + n) for n in range(page)] if reload else ["__rand_int__"] * page
    day = recorder.moment_of(None)[1]
    script_keys, args = recorder.record_call(0, viewer, posts, "", day, guard=not cluster)
    tags = (keys.tag(0), keys.guard_key().split(":", 1)[0])
    for tag in tags:
        script_keys = [key.replace(tag, "{tag}") for key in script_keys]
    return ["EVALSHA", sha, len(script_keys), *script_keys, *args]


def redis_benchmark_rows(url, raw, page):
    """Table rows: our RECORD script (random viewer, `page` random posts) and PING, 1 and 50 clients."""
    try:
        raw.client  # noqa: B018  (connects and loads the script)
        record = record_command(raw.sha, page, cluster=False)
        rows = []
        for clients in (1, 50):
            for parsed in redis_benchmark(url, clients, *record):
                rows.append(row("RECORD script, 20 posts", clients, parsed, page))
            for parsed in redis_benchmark(url, clients, "PING"):
                rows.append(row("PING (bare round trip)", clients, parsed, None))
        return rows
    except ContenderFailed as error:
        return [[f"FAILED: {error}", "", "", "", "", ""]]


def row(label, clients, parsed, page):
    return [
        label,
        str(clients),
        format_rate(parsed["rps"]),
        format_rate(parsed["rps"] * page) if page else "-",
        f"{parsed['p50_ms'] * 1000:.0f} µs",
        f"{parsed['p99_ms'] * 1000:.0f} µs",
    ]
