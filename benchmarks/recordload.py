"""The record path under load: first views and reloads, 1 to 8 processes, on the standalone Redis
and on a real 3-node cluster; ours against the same Lua script sent from plain redis-py, next to
redis-benchmark's ceiling for that script, with the servers' CPU per impression (INFO deltas)."""

import math
import os
import time
from dataclasses import dataclass, field
from itertools import cycle

from . import ours, pinning, targets
from .harness import ContenderFailed, format_rate
from .loadworkers import START_DELAY, Outcome, WorkerPool, timed_loop
from .redisraw import RawRecorder, record_command, redis_benchmark
from .targets import ServerSample, sum_samples

FIRST_VIEWS, SCROLLS, RELOADS = "first views", "scrolls", "reloads"
COUNTING = (FIRST_VIEWS, SCROLLS)  # workloads whose every call counts all its posts
OURS, RAW, CEILING = "ours", "raw", "ceiling"
PAGE = 20
NEWEST = 20_000  # pages are drawn from the newest posts, as timelines are
# Pages a viewer sees: first views, one each (a fresh viewer per call, as redis-benchmark's
# __rand_int__ viewer: the same work for the server); scrolls and reloads, three (the second and
# third pages find the viewer's sorted set and cost the server more).
PAGES_PER_VIEWER = {FIRST_VIEWS: 1, SCROLLS: 3, RELOADS: 3}
# Calls per second of all processes together that the prepared first views outlast.
RATE_BOUND = 20_000
RELOAD_PAIRS = 1_000  # (viewer, page) pairs a process records once, then reloads round and round
CEILING_CLIENTS = 50
SLICES = 8  # slices of each contender in one run, alternating
WARM_UP_ATTEMPTS = 20
FIRST_CEILING_RATE = 5_000  # calls/s, to size an untimed first run; timed ones use the last rate
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

    def pairs(self, contender, workload, processes, seconds):
        """[(viewer number, page index)]: viewer k sees PAGES_PER_VIEWER distinct pages."""
        count = RELOAD_PAIRS
        if workload in COUNTING:
            count = math.ceil(RATE_BOUND * seconds / processes)
        pages = PAGES_PER_VIEWER[workload]
        # No two processes, and not ours and raw, share a viewer.
        first = (self.index + 1) * 10_000_000 + (5_000_000 if contender == RAW else 0)
        out = []
        for n in range(count):
            viewer, nth = divmod(n, pages)
            out.append((first + viewer, (viewer * 7 + nth) % len(self.pages)))
        return out

    def prepare(self, workload, processes, seconds):
        """Build both contenders' calls (untimed); for reloads, record each once first. Redis is
        empty."""
        from impressions.reloads import reloads

        reloads.clear()
        self.runs = {}
        for contender in (OURS, RAW):
            pairs = self.pairs(contender, workload, processes, seconds)
            if contender == OURS:
                requests = {}
                items = [
                    (requests.get(viewer) or requests.setdefault(viewer, self.request(viewer)),
                     self.post_pages[page])
                    for viewer, page in pairs
                ]  # fmt: skip
                call = self.call_ours
                warm_up(ours.redis_client)
            else:
                items = self.raw.calls([(f"u:{v}", self.pages[page]) for v, page in pairs])
                call = self.raw.call
                warm_up(lambda: self.raw.client)
            if workload == RELOADS:
                for item in items:
                    record_until_done(call, item)
            # An iterator each: the slices of a contender go on where its last one stopped.
            self.runs[contender] = (iter(items) if workload in COUNTING else cycle(items), call)
        return len(items)

    def run(self, start_at, slice_seconds, order):
        """Slice k (from start_at + k * slice_seconds) runs contender order[k]: every process
        switches at the same moments. Returns {contender: Outcome over its slices}."""
        out = {}
        for k, contender in enumerate(order):
            items, call = self.runs[contender]
            done = timed_loop(items, call, start_at + k * slice_seconds, slice_seconds)
            out[contender] = merged(out.get(contender), done)
        return out

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


def record_until_done(call, item):
    """A reload must find its first view recorded (and ours' cache told): retry a timeout."""
    for _ in range(20):
        counted, lost = call(item)
        if not lost:
            return counted
    raise ContenderFailed("Redis kept timing out while recording the first views")


def merged(total, outcome):
    """Two Outcomes of one contender (slices of a run) as one."""
    if total is None:
        return outcome
    total.latencies.extend(outcome.latencies)
    return Outcome(
        total.calls + outcome.calls,
        total.counted + outcome.counted,
        total.lost + outcome.lost,
        total.elapsed + outcome.elapsed,
        total.exhausted or outcome.exhausted,
        total.latencies,
    )


def warm_up(client_of):
    """Connect to every node (and load the script) before the clock starts; the 50 ms timeout
    may strike a busy machine's first calls, so it tries again."""
    from redis.cluster import RedisCluster
    from redis.exceptions import RedisError

    for attempt in range(WARM_UP_ATTEMPTS):
        try:
            client = client_of()
            if isinstance(client, RedisCluster):
                client.ping(target_nodes=RedisCluster.ALL_NODES)
            else:
                client.ping()
            return
        except RedisError:
            if attempt == WARM_UP_ATTEMPTS - 1:
                raise
            time.sleep(0.05)


class LoadBench:
    """One target, a pool of forked processes, and the runs of each contender on it."""

    def __init__(self, target, post_ids, processes, seconds, log=print):
        self.target = target
        self.seconds = seconds
        self.log = log
        newest = post_ids[-NEWEST:][::-1]
        self.pool = WorkerPool(
            max(processes),
            lambda index: RecordWorker(index, target, newest),
            cpus=target.client_cpus,
        )
        self.ceiling_rates = {}
        self.benchmark_checked = False
        if target.pinned:
            self.log_pinning("before its runs")
        _keys, _recorder, scripts = _imports()
        self.sha = target.load_script(scripts.RECORD)

    def log_pinning(self, when):
        """The servers' and the load processes' affinity, as /proc has it (or ContenderFailed)."""
        self.log(f"    {self.target.name}, {when}: {self.target.pinned.describe()}; /proc reads")
        self.log(f"      {pinning.check(os.getpid(), self.target.client_cpus, 'this process')}")
        for line in self.target.check_pinned():
            self.log(f"      {line}")
        clients = self.target.client_cpus
        for pid in self.pool.pids:
            self.log(f"      {pinning.check(pid, clients, 'load process')}")

    def check_still_pinned(self):
        if self.target.pinned:
            self.log_pinning("after its runs")

    def close(self):
        self.pool.close()

    def run_pair(self, workload, processes, ours_first):
        """One timed run of ours and raw in alternating slices (SLICES of each, every process
        switching at once), checked for exactness; {contender: LoadRun}."""
        self.target.flush()
        self.pool.ask(processes, "prepare", workload, processes, self.seconds)
        first, second = (OURS, RAW) if ours_first else (RAW, OURS)
        order = [first, second] * SLICES
        slice_seconds = self.seconds / SLICES
        pending_before = self.target.pending_total()
        start_at = time.time() + START_DELAY
        replies = self.pool.ask_async(processes, "run", start_at, slice_seconds, order)
        server = {OURS: ServerSample(0.0, 0, 0), RAW: ServerSample(0.0, 0, 0)}
        before = self.target.sample()
        for k, contender in enumerate(order):
            time.sleep(max(0.0, start_at + (k + 1) * slice_seconds - time.time()))
            after = self.target.sample()
            server[contender] = sum_samples([server[contender], after - before])
            before = after
        outcomes = replies()
        pending = self.target.pending_total() - pending_before
        runs = {c: self.load_run(c, workload, processes, [o[c] for o in outcomes], server[c])
                for c in (OURS, RAW)}  # fmt: skip
        counted = runs[OURS].counted + runs[RAW].counted
        lost = runs[OURS].lost + runs[RAW].lost
        if not counted <= pending <= counted + lost:
            raise ContenderFailed(
                f"{workload}: Redis holds {pending:,} pending impressions, the calls counted"
                f" {counted:,} ({lost:,} lost)"
            )
        return runs

    def load_run(self, contender, workload, processes, outcomes, server):
        calls = sum(o.calls for o in outcomes)
        counted = sum(o.counted for o in outcomes)
        lost = sum(o.lost for o in outcomes)
        check_exact(contender, workload, calls * PAGE, counted, lost, None)
        rate = sum((o.calls * PAGE - o.lost) / o.elapsed for o in outcomes if o.elapsed > 0)
        run = LoadRun(contender, processes, calls, calls * PAGE, counted, lost, rate, server)
        run.latencies = [value for o in outcomes for value in o.latencies]
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
        key = (workload, tuple(command or ()))
        if command is None:
            command = record_command(self.sha, PAGE, self.target.cluster, workload == RELOADS)
        if key not in self.ceiling_rates:
            # Untimed: a run sized by a guess may end in a fraction of a second, its 50
            # connections' set-up a large part of it (a ceiling half the next rounds').
            self.target.flush()
            self.ceiling_rates[key] = self._benchmark(command, FIRST_CEILING_RATE)["rps"]
        self.target.flush()
        requests = self._requests(self.ceiling_rates[key])
        before = self.target.sample()
        parsed = self._benchmark(command, self.ceiling_rates[key])
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

    def _requests(self, rate):
        """Calls that last about self.seconds at `rate` calls/s (2,000 at least)."""
        return max(2_000, int(rate * self.seconds))

    def _benchmark(self, command, rate):
        """redis-benchmark's parsed result for ~self.seconds of `command` at `rate` calls/s."""
        return redis_benchmark(
            self.target.url,
            CEILING_CLIENTS,
            *command,
            requests=self._requests(rate),
            cluster=self.target.cluster,
            cpus=self.target.client_cpus,
            pinned=self._benchmark_pinned,
        )[0]

    def _benchmark_pinned(self, line):
        if not self.benchmark_checked:  # the first one of the target: they are all alike
            self.benchmark_checked = True
            self.log(f"      {line}")

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
    the calls reported by at most the impressions reported lost (`pending` None: not checked
    here, the caller checks both contenders' sum).
    """
    expected = served - lost if workload in COUNTING else 0
    if counted != expected:
        raise ContenderFailed(
            f"{contender}, {workload}: the calls counted {counted:,} impressions, expected"
            f" {expected:,} (the workload is not what it claims)"
        )
    if pending is not None and not counted <= pending <= counted + lost:
        raise ContenderFailed(
            f"{contender}, {workload}: Redis holds {pending:,} pending impressions, the calls"
            f" counted {counted:,} ({lost:,} lost)"
        )
