"""The record path under load: first views and reloads, 1 to 8 processes, on the standalone Redis
and on a real 3-node cluster; ours against the same Lua script sent from plain redis-py, next to
redis-benchmark's ceiling for that script, with the servers' CPU per impression (INFO deltas)."""

import math
import time
from dataclasses import dataclass, field

from . import ours, targets
from .harness import ContenderFailed, format_rate
from .loadworkers import START_DELAY, WorkerPool, timed_loop
from .redisraw import RawRecorder, record_command, redis_benchmark

FIRST_VIEWS, RELOADS = "first views", "reloads"
OURS, RAW, CEILING = "ours", "raw", "ceiling"
PAGE = 20
NEWEST = 20_000  # pages are drawn from the newest posts, as timelines are
PAGES_PER_VIEWER = 3  # a viewer scrolls three pages: each call counts 20 posts new to it
# Calls per second of all processes together that the prepared first views outlast.
RATE_BOUND = 20_000
RELOAD_PAIRS = 1_000  # (viewer, page) pairs a process records once, then reloads round and round
CEILING_CLIENTS = 50
FIRST_CEILING_RATE = 5_000  # calls/s, to size redis-benchmark's first run; later runs use the last
# Issue 19's goals: ours per process against raw redis-py, and all processes against the ceiling.
GOAL_PER_PROCESS = 0.8
GOAL_CEILING = 0.7


@dataclass
class LoadRun:
    """One timed run of one contender: all its processes together."""

    contender: str
    processes: int
    calls: int
    served: int  # impressions in the calls
    counted: int
    lost: int  # impressions of failed calls (the 50 ms timeout)
    rate: float  # impressions recorded per second: counted, or de-duplicated on a reload
    server: targets.ServerSample
    latencies: list = field(default_factory=list, repr=False)
    exhausted: bool = False

    @property
    def cpu_per_impression(self):
        """Redis CPU (all nodes) per recorded impression, in seconds."""
        recorded = self.served - self.lost
        return self.server.cpu / recorded if recorded else math.nan

    @property
    def bytes_per_call(self):
        return (self.server.net_in + self.server.net_out) / self.calls if self.calls else math.nan


class RecordWorker:
    """Lives in a forked process: builds a contender's calls, then runs them when told."""

    def __init__(self, index, target, post_ids):
        from django.test import override_settings

        from casusult.models import Post

        override_settings(
            IMPRESSIONS_REDIS_URL=target.url, IMPRESSIONS_REDIS_CLUSTER=str(target.cluster).lower()
        ).enable()
        self.index = index
        self.pages = [post_ids[i : i + PAGE] for i in range(0, len(post_ids) - PAGE + 1, PAGE)]
        # The view has its page of posts already: built once, untimed.
        self.post_pages = [[Post(id=post_id) for post_id in page] for page in self.pages]
        self.record = ours.record()
        self.raw = RawRecorder(target.url, target.cluster)
        self.items, self.call, self.cycle = [], None, False

    def pairs(self, workload, processes, seconds):
        """[(viewer number, page index)]: viewer k scrolls PAGES_PER_VIEWER distinct pages."""
        count = RELOAD_PAIRS
        if workload == FIRST_VIEWS:
            count = math.ceil(RATE_BOUND * seconds / processes)
        first = (self.index + 1) * 10_000_000  # no two processes share a viewer
        out = []
        for n in range(count):
            viewer, nth = divmod(n, PAGES_PER_VIEWER)
            out.append((first + viewer, (viewer * 7 + nth) % len(self.pages)))
        return out

    def prepare(self, contender, workload, processes, seconds):
        """Build the calls (untimed); for reloads, record each once first. Redis is empty."""
        from impressions.reloads import reloads

        reloads.clear()
        pairs = self.pairs(workload, processes, seconds)
        if contender == OURS:
            requests = {}
            self.items = [
                (requests.get(viewer) or requests.setdefault(viewer, self.request(viewer)),
                 self.post_pages[page])
                for viewer, page in pairs
            ]  # fmt: skip
            self.call = self.call_ours
            warm_up(ours.redis_client())
        else:
            self.items = self.raw.calls(
                [(f"u:{viewer}", self.pages[page]) for viewer, page in pairs]
            )
            self.call = self.raw.call
            warm_up(self.raw.client)
        self.cycle = workload == RELOADS
        if self.cycle:
            for item in self.items:
                self.record_until_done(item)
        return len(self.items)

    def record_until_done(self, item):
        """A reload must find its first view recorded (and ours' cache told): retry a timeout."""
        for _ in range(20):
            counted, lost = self.call(item)
            if not lost:
                return counted
        raise ContenderFailed("Redis kept timing out while recording the first views")

    def request(self, viewer):
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.http import HttpRequest

        request = HttpRequest()
        request.method = "GET"
        request.COOKIES[settings.SESSION_COOKIE_NAME] = f"bench-session-{viewer}"
        request.user = get_user_model()(pk=viewer, username=f"bench-load-{viewer}")
        return request

    def call_ours(self, item):
        result = self.record(*item)
        return (result.counted, result.lost) if result is not None else (0, 0)

    def run(self, start_at, seconds):
        return timed_loop(self.items, self.call, start_at, seconds, cycle=self.cycle)


def warm_up(client):
    """Connect to every node before the clock starts."""
    from redis.cluster import RedisCluster

    if isinstance(client, RedisCluster):
        client.ping(target_nodes=RedisCluster.ALL_NODES)
    else:
        client.ping()


class LoadBench:
    """One target, a pool of forked processes, and the runs of each contender on it."""

    def __init__(self, target, post_ids, processes, seconds, log=print):
        self.target = target
        self.seconds = seconds
        self.log = log
        newest = post_ids[-NEWEST:][::-1]
        self.pool = WorkerPool(max(processes), lambda index: RecordWorker(index, target, newest))
        self.ceiling_rates = {}
        _keys, _recorder, scripts = _imports()
        self.sha = target.load_script(scripts.RECORD)

    def close(self):
        self.pool.close()

    def run(self, contender, workload, processes):
        """One timed run of ours or raw with `processes` processes, checked for exactness."""
        self.target.flush()
        self.pool.ask(processes, "prepare", contender, workload, processes, self.seconds)
        pending_before = self.target.pending_total()
        before = self.target.sample()
        outcomes = self.pool.ask(processes, "run", time.time() + START_DELAY, self.seconds)
        server = self.target.sample() - before
        pending = self.target.pending_total() - pending_before
        calls = sum(o.calls for o in outcomes)
        counted = sum(o.counted for o in outcomes)
        lost = sum(o.lost for o in outcomes)
        check_exact(contender, workload, calls * PAGE, counted, lost, pending)
        rate = sum((o.calls * PAGE - o.lost) / o.elapsed for o in outcomes if o.elapsed > 0)
        latencies = [value for o in outcomes for value in o.latencies]
        run = LoadRun(contender, processes, calls, calls * PAGE, counted, lost, rate, server)
        run.latencies = latencies
        run.exhausted = any(o.exhausted for o in outcomes)
        self.log(
            f"    {self.target.name}, {workload}, {processes} process(es), {contender}:"
            f" {format_rate(rate)} impressions/s"
            f", {run.cpu_per_impression * 1e6:.2f} µs Redis CPU each"
            + (f", {lost:,} lost" if lost else "")
        )
        return run

    def ceiling(self, workload, command=None):
        """redis-benchmark, CEILING_CLIENTS connections, our script (or `command`) for ~seconds."""
        self.target.flush()
        key = (workload, tuple(command or ()))
        requests = max(2_000, int(self.ceiling_rates.get(key, FIRST_CEILING_RATE) * self.seconds))
        if command is None:
            command = record_command(self.sha, PAGE, self.target.cluster, workload == RELOADS)
        before = self.target.sample()
        parsed = redis_benchmark(
            self.target.url,
            CEILING_CLIENTS,
            *command,
            requests=requests,
            cluster=self.target.cluster,
        )[0]
        server = self.target.sample() - before
        self.ceiling_rates[key] = parsed["rps"]
        page = PAGE if command[0] == "EVALSHA" else 1
        run = LoadRun(
            CEILING, CEILING_CLIENTS, requests, requests * page, 0, 0, parsed["rps"] * page, server
        )
        if page > 1:
            self.log(
                f"    {self.target.name}, {workload}, redis-benchmark -c {CEILING_CLIENTS}:"
                f" {format_rate(run.rate)} impressions/s"
                f", {run.cpu_per_impression * 1e6:.2f} µs Redis CPU each"
            )
        return run

    def simple_command_cpu(self):
        """Redis CPU of one SET of 3 bytes (the ECPU's unit of work), from redis-benchmark."""
        run = self.ceiling("SET", ["SET", "{tag}:bench:__rand_int__", "abc"])
        return run.server.cpu / run.calls


def _imports():
    try:
        from impressions import keys, recorder, scripts
    except ImportError as error:
        raise ContenderFailed(f"the impressions app is not available ({error})") from None
    return keys, recorder, scripts


def check_exact(contender, workload, served, counted, lost, pending):
    """Ours and raw must count exactly: every first view once, no reload at all.

    A call that timed out may still have run in Redis, so the pending counts may exceed what
    the calls reported by at most the impressions reported lost.
    """
    expected = served - lost if workload == FIRST_VIEWS else 0
    if counted != expected:
        raise ContenderFailed(
            f"{contender}, {workload}: the calls counted {counted:,} impressions, expected"
            f" {expected:,} (the workload is not what it claims)"
        )
    if not counted <= pending <= counted + lost:
        raise ContenderFailed(
            f"{contender}, {workload}: Redis holds {pending:,} pending impressions, the calls"
            f" counted {counted:,} ({lost:,} lost)"
        )
