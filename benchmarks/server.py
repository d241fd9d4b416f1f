"""The real server: gunicorn (casusult/gunicorn_conf.py) under wrk, by table size, page, viewer kind.

One gunicorn per (posts, impressions on/off), all started up front and idle but the one under load,
so the cases interleave without restarts. Each (posts, page, kind) runs as an on/off pair, back to
back, and the sizes of a (page, kind) one after the other, the order reversed every other round
(see round_order), so that each round gives paired on ÷ off and large ÷ small ratios measured
under the same machine load. Each case: wrk warms up, then runs
timed; around it the database's connections are ended so PostgreSQL publishes their row counters
(a backend publishes them when idle, up to 10 s late, and when it exits), giving the rows written
per request.
"""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg
import redis

from impressions.conf import MAX_HOURLY_BUDGET as UNLIMITED_BUDGET

from . import fixtures
from .harness import (
    BASELINE,
    OURS,
    Contender,
    ContenderFailed,
    Measurement,
    Result,
    run_round,
)

PROJECT_DIR = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WARM_UP_SECONDS = 2  # every process resolves every session and visitor once: the steady state
# The servers' database sessions carry this name: only they are ended to publish their counters.
APPLICATION_NAME = "casusult-bench-server"
# A connection idle this long is between requests: a request's queries come closer together.
QUIET_SECONDS = 0.3
VIEWERS = 200  # of each kind; wrk cycles through them, so most views are reloads (de-duplicated)
KINDS = ("logged-in", "anonymous, cookie", "anonymous, no cookies")
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 casusult-bench/1 viewer-{}"
WRK_SCRIPT = """
local headers = {%(headers)s}
local path = %(path)s
local n = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("first", threads * 97)
end
function init(args) n = first or 0 end
function request()
  n = n %% #headers + 1
  return wrk.format("GET", path, headers[n])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests": %%d, "us": %%d, "errors": %%d, "p50_us": %%d, "p99_us": %%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass
class Server:
    posts: int
    recording: bool
    database_url: str
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"


def database_for(options, posts):
    """The main benchmark database for its size (1,000,000), `<name>_<posts>` for the others."""
    if posts == options.posts:
        return options.database_url
    parts = urlsplit(options.database_url)
    return urlunsplit(parts._replace(path=f"{parts.path}_{posts}"))


def server_env(database_url, redis_url, secret_key, port, recording, workdir):
    keep = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO", "IMPRESSIONS_", "GUNICORN_", "PROMETHEUS_"))
    }
    return {
        **keep,
        "DJANGO_SETTINGS_MODULE": "settings.prod",
        "SECRET_KEY": secret_key,
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": f"{database_url}?application_name={APPLICATION_NAME}",
        "REDIS_URL": redis_url,
        # No flush during the runs: the flush is a worker's batch job (section 2), not a view's.
        "QUEUE_BACKEND": "dummy",
        "IMPRESSIONS_ENABLED": "true" if recording else "false",
        # wrk's clients are one address and a few viewers, thousands of views a second: budgets
        # that never refuse, still checked on every view (their cost is part of recording's).
        "IMPRESSIONS_IP_NEW_VIEWERS_PER_HOUR": str(UNLIMITED_BUDGET),
        "IMPRESSIONS_VIEWER_IMPRESSIONS_PER_HOUR": str(UNLIMITED_BUDGET),
        "STATIC_ROOT": str(workdir / "static"),
        "LOG_LEVEL": "WARNING",
        # gunicorn's own variable: casusult/gunicorn_conf.py's defaults, overridden.
        "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port} --workers 3 --threads 4",
    }


def prepare_database(url, posts, env, depth):
    print(f"  {fixtures.ensure_database(url)}; preparing {posts:,} posts ...")
    arguments = ["--posts", str(posts), "--viewers", str(VIEWERS), "--depth", str(depth)]
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.serverprep", *arguments],
        cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    if completed.returncode != 0:
        raise SystemExit(f"preparing {url} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def start_server(posts, recording, database_url, env, workdir):
    port = int(env["GUNICORN_CMD_ARGS"].split()[1].rsplit(":", 1)[1])
    log = workdir / f"gunicorn-{posts}-{'on' if recording else 'off'}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:casusult.gunicorn_conf", "casusult.wsgi"],
        cwd=PROJECT_DIR, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    return Server(posts, recording, database_url, port, process, log)


def wait_until_up(server, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"gunicorn exited:\n{server.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"gunicorn did not answer within {timeout} s")


def stop(servers):
    for server in servers:
        if server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGTERM)
    for server in servers:
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)


def viewer_headers(kind, prepared):
    """wrk header tables, one per viewer of this kind."""
    base = {"Host": "127.0.0.1", "X-Forwarded-Proto": "https"}
    rows = []
    for number in range(VIEWERS):
        headers = {**base, "User-Agent": BROWSER.format(number)}
        if kind == "logged-in":
            headers["Cookie"] = f"sessionid={prepared['sessions'][number]}"
        elif kind == "anonymous, cookie":
            headers["Cookie"] = f"visitor={prepared['visitor_cookies'][number]}"
        rows.append(headers)
    return rows


def lua(value):
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{lua(k)}] = {lua(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)  # a JSON string is a valid Lua string literal here (ASCII only)


def run_wrk(url, path, headers, seconds, connections, workdir):
    script = workdir / "case.lua"
    script.write_text(
        WRK_SCRIPT % {"headers": ", ".join(lua(h) for h in headers), "path": lua(path)}
    )
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    completed = subprocess.run(
        [*command, "-s", str(script), url], capture_output=True, text=True, timeout=seconds + 60
    )
    line = next((x for x in completed.stdout.splitlines() if x.startswith("WRK ")), None)
    if completed.returncode != 0 or line is None:
        raise ContenderFailed(f"wrk failed: {completed.stdout[-500:]} {completed.stderr[-500:]}")
    return json.loads(line[4:])


class RowCounters:
    """Rows written to one database, as PostgreSQL counts them (pg_stat_user_tables and _database)."""

    def __init__(self, url):
        self.connection = psycopg.connect(url, autocommit=True)

    def settle(self):
        """End the site's connections, wait until their processes are gone (counters published);
        returns the CPU seconds those processes used.

        Only once they are quiet: a request wrk gave up on at the end of its run is still being
        answered for a moment, and ending its connection under it would be a server error (and
        CPU counted in this case)."""
        self.wait_until_quiet()
        pids = [
            row[0]
            for row in self.connection.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = %s",
                [APPLICATION_NAME],
            )
        ]
        used = sum(cpu_seconds(pid) for pid in pids)
        for pid in pids:
            self.connection.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 10
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if process_exists(pid)]
            time.sleep(0.05)
        return used

    def wait_until_quiet(self, quiet=QUIET_SECONDS, timeout=5):
        """Until every connection of the site has been idle for `quiet` seconds (or `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = self.connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = %s"
                " AND (state <> 'idle' OR state_change > now() - make_interval(secs => %s))",
                [APPLICATION_NAME, quiet],
            ).fetchone()[0]
            if not busy:
                return
            time.sleep(0.05)

    def read(self):
        self.connection.execute("SELECT pg_stat_clear_snapshot()")
        tables = self.connection.execute(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables"
        ).fetchone()[0]
        database = self.connection.execute(
            "SELECT tup_inserted + tup_updated + tup_deleted FROM pg_stat_database"
            " WHERE datname = current_database()"
        ).fetchone()[0]
        return int(tables), int(database)


def cpu_seconds(pid):
    """User + system CPU seconds a process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def workers_cpu(server):
    """CPU seconds used by the gunicorn master's worker processes."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == server.process.pid:
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def redis_cpu(client):
    info = client.info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


def process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process (PostgreSQL's), still there
    return True


@dataclass
class Case:
    posts: int
    page: str  # "1" or "500"
    kind: str
    recording: bool

    @property
    def key(self):
        """The pair this case is one side of: the same request, impressions on or off."""
        return (self.posts, self.page, self.kind)

    @property
    def name(self):
        return f"{self.posts:,} posts, page {self.page}, {self.kind}, impressions {'on' if self.recording else 'off'}"


@dataclass
class ServerRun(Measurement):
    """One wrk run of one case: the requests and seconds, and its per-request figures (latency,
    CPU, rows written) for server_report."""

    figures: dict = field(default_factory=dict)


def pair_keys(options):
    """Every (posts, page, kind): the pairs of cases, impressions on and off; by page and kind,
    the sizes in order."""
    pages = ("1", str(options.server_depth))
    return [
        (posts, page, kind) for page in pages for kind in KINDS for posts in options.server_posts
    ]


def round_order(keys, round_number):
    """The cases of one round, in the order they run.

    The cases of one (page, viewer kind) run as a group: each size's on/off pair back to back,
    the sizes one after the other, so that both ratios the benchmark judges (on ÷ off, and the
    large table ÷ the small one) compare runs made under the same load of a shared machine. In
    even rounds (round_number 0, 2, ...) a group runs small on, small off, large on, large off;
    in odd ones the reverse, because a run finds the database's pages and the machine's caches
    warmed by the one before (the two servers of a size share one database): an even number of
    rounds gives each side of each ratio the first place as often. The groups rotate by one each
    round, so drift spreads over all of them.
    """
    groups = {}
    for key in keys:
        groups.setdefault(key[1:], []).append(key)
    groups = list(groups.values())
    shift = round_number % len(groups)
    order = []
    for group in groups[shift:] + groups[:shift]:
        cases = [Case(*key, recording) for key in group for recording in (True, False)]
        order += cases if round_number % 2 == 0 else cases[::-1]
    return order


def run_pairs(contenders, keys, rounds, log=print):
    """Every case once a round, in round_order. Returns the Results (a failed case keeps its
    error and is not rerun, as in run_interleaved) and, by case name, the figures of each run
    with its round and req/s: server_report pairs the two sides of a round by that round."""
    results = {name: Result(contender) for name, contender in contenders.items()}
    figures = {}
    for round_number in range(rounds):
        for case in round_order(keys, round_number):
            measurement = run_round(results[case.name], round_number, log)
            if measurement is not None:
                run = {**measurement.figures, "round": round_number, "rate": measurement.rate}
                figures.setdefault(case.name, []).append(run)
    return list(results.values()), figures


def run(options, log=print):
    """Every case for `options.server_rounds` rounds of pairs; server_report renders them."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk (make bench installs it)")
    workdir = Path(tempfile.mkdtemp(prefix="casusult-bench-server-"))
    load_before = os.getloadavg()[0]
    secret_key = secrets.token_urlsafe(50)
    depth = options.server_depth
    servers, counters, prepared = {}, {}, {}
    try:
        for posts in options.server_posts:
            url = database_for(options, posts)
            env = server_env(url, options.redis_url, secret_key, 0, True, workdir)
            prepared[posts] = prepare_database(url, posts, env, depth)
            counters[posts] = RowCounters(url)
            for recording in (True, False):
                port = fixtures.free_port()
                env = server_env(url, options.redis_url, secret_key, port, recording, workdir)
                servers[posts, recording] = start_server(posts, recording, url, env, workdir)
        for server in servers.values():
            wait_until_up(server)
        log(f"servers up: {len(servers)} gunicorns (3 processes x 4 threads each)")
        keys = pair_keys(options)
        cases = [Case(*key, recording) for key in keys for recording in (True, False)]
        contenders = {
            case.name: Contender(
                case.name,
                case_runner(case, servers, counters, prepared, options, workdir),
                OURS if case.recording else BASELINE,
            )
            for case in cases
        }
        results, figures = run_pairs(contenders, keys, options.server_rounds, log)
    finally:
        stop(servers.values())
        for counter in counters.values():
            counter.connection.close()
    load = (load_before, os.getloadavg()[0])
    return cases, results, figures, prepared, load


def case_runner(case, servers, counters, prepared, options, workdir):
    server = servers[case.posts, case.recording]
    redis_client = redis.Redis.from_url(options.redis_url)
    path = "/api/timeline/"
    if case.page != "1":
        path += "?" + urlencode({"cursor": prepared[case.posts]["deep_cursor"]})
    headers = viewer_headers(case.kind, prepared[case.posts])

    def run():
        counter = counters[case.posts]
        counter.settle()
        before, cpu_before = counter.read(), workers_cpu(server) + redis_cpu(redis_client)
        connections = options.server_connections
        warm = run_wrk(server.url, path, headers, WARM_UP_SECONDS, connections, workdir)
        timed = run_wrk(server.url, path, headers, options.server_duration, connections, workdir)
        cpu = workers_cpu(server) + redis_cpu(redis_client) - cpu_before + counter.settle()
        after = counter.read()
        if warm["errors"] or timed["errors"]:
            raise ContenderFailed(f"{timed['errors']} non-2xx or socket errors")
        requests = warm["requests"] + timed["requests"]
        return ServerRun(
            seconds=timed["us"] / 1e6,
            units=timed["requests"],
            figures={
                "p50": timed["p50_us"] / 1e6,
                "p99": timed["p99_us"] / 1e6,
                "rows": (after[0] - before[0]) / requests,
                "database_rows": (after[1] - before[1]) / requests,
                "cpu": cpu / requests,
            },
        )

    return run
