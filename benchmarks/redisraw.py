"""The record path's raw limits: our Lua script from plain redis-py, and redis-benchmark."""

import csv
import io
import shutil
import subprocess
import time
import urllib.parse

from .harness import ContenderFailed, format_rate

BENCHMARK_REQUESTS = 20_000


def _impressions():
    try:
        from impressions import keys, recorder, scripts
    except ImportError as error:
        raise ContenderFailed(f"the impressions app is not available ({error})") from None
    return keys, recorder, scripts


class RawRecorder:
    """Sends exactly the keys and arguments ours sends, from a plain client: no Django at all."""

    def __init__(self, url):
        self.url = url
        self._client = self._script = None

    @property
    def client(self):
        if self._client is None:
            import redis

            _keys, _recorder, scripts = _impressions()
            self._client = redis.Redis.from_url(self.url)
            self._script = self._client.register_script(scripts.RECORD)
        return self._client

    def calls(self, requests):
        """[(keys, args)] for [(viewer key, post ids)], the way impressions.recorder builds them."""
        keys, recorder, _scripts = _impressions()
        _now, day = recorder.moment_of(None)
        return [
            recorder.record_call(keys.shard_of(viewer_key), viewer_key, post_ids, "", day)
            for viewer_key, post_ids in requests
        ]

    def replay(self, calls):
        """EVALSHA each call; the per-call latencies."""
        self.client  # noqa: B018  (connects and registers the script, untimed)
        script = self._script
        latencies = []
        for script_keys, args in calls:
            start = time.perf_counter()
            script(keys=script_keys, args=args)
            latencies.append(time.perf_counter() - start)
        return latencies


def parse_csv(text):
    """redis-benchmark --csv rows as dicts (the header repeats once per test)."""
    rows = [row for row in csv.reader(io.StringIO(text)) if row and row[0] != "test"]
    return [
        {"test": row[0], "rps": float(row[1]), "p50_ms": float(row[4]), "p99_ms": float(row[6])}
        for row in rows
    ]


def redis_benchmark(url, clients, *command, requests=BENCHMARK_REQUESTS):
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "redis":
        raise ContenderFailed(f"redis-benchmark is only run against redis:// URLs, not {url}")
    argv = [
        "redis-benchmark",
        "-h",
        parts.hostname or "127.0.0.1",
        "-p",
        str(parts.port or 6379),
        "--dbnum",
        parts.path.strip("/") or "0",
        "-n",
        str(requests),
        "-c",
        str(clients),
        "-r",
        "1000000",
        "--csv",
    ]
    if parts.password:
        argv += ["-a", urllib.parse.unquote(parts.password), "--no-auth-warning"]
    completed = subprocess.run(
        argv + [str(part) for part in command], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise ContenderFailed(f"redis-benchmark failed: {completed.stderr.strip()[:200]}")
    return parse_csv(completed.stdout)


def redis_benchmark_rows(url, raw, page):
    """Table rows: our RECORD script (random viewer, `page` random posts) and PING, 1 and 50 clients."""
    if not shutil.which("redis-benchmark"):
        return [
            ["redis-benchmark is not on PATH (apt-get install redis-tools)", "", "", "", "", ""]
        ]
    try:
        _keys, recorder, scripts = _impressions()
        sha = raw.client.script_load(scripts.RECORD)
        _now, day = recorder.moment_of(None)
        # A fresh viewer per call, all in shard 0's slot.
        script_keys, args = recorder.record_call(
            0, "u:__rand_int__", ["__rand_int__"] * page, "", day
        )
        record = ["EVALSHA", sha, len(script_keys), *script_keys, *args]
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
