"""The real server: gunicorn (casusult/gunicorn_conf.py) under wrk, by table size, page, viewer kind.

One gunicorn per (posts, impressions on/off), all started up front and idle but the one under load,
so the cases interleave without restarts. Each case: wrk warms up, then runs timed; around it
the database's connections are ended so PostgreSQL publishes their row counters (a backend
publishes them when idle, up to 10 s late, and when it exits), giving the rows written per request.
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
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg
import redis

from . import fixtures
from .harness import (
    BASELINE,
    OURS,
    Contender,
    ContenderFailed,
    Measurement,
    format_ratio,
    markdown_table,
    median,
    ratio,
)

PROJECT_DIR = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WARM_UP_SECONDS = 2  # every process resolves every session and visitor once: the steady state
# The servers' database sessions carry this name: only they are ended to publish their counters.
APPLICATION_NAME = "casusult-bench-server"
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
        "STATIC_ROOT": str(workdir / "static"),
        "LOG_LEVEL": "WARNING",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "3",
        "GUNICORN_THREADS": "4",
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
    port = int(env["GUNICORN_BIND"].rsplit(":", 1)[1])
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
        returns the CPU seconds those processes used."""
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
    def name(self):
        return f"{self.posts:,} posts, page {self.page}, {self.kind}, impressions {'on' if self.recording else 'off'}"


def run(options, log=print):
    """(markdown, headline figures) of every case, `options.server_rounds` interleaved rounds."""
    from .harness import run_interleaved

    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk (make bench installs it)")
    workdir = Path(tempfile.mkdtemp(prefix="casusult-bench-server-"))
    load_before = os.getloadavg()[0]
    secret_key = secrets.token_urlsafe(50)
    depth = options.server_depth
    servers, counters, prepared, figures = {}, {}, {}, {}
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
        cases = [
            Case(posts, page, kind, recording)
            for posts in options.server_posts
            for page in ("1", str(depth))
            for kind in KINDS
            for recording in (True, False)
        ]
        contenders = [
            Contender(
                case.name,
                case_runner(case, servers, counters, prepared, options, workdir, figures),
                OURS if case.recording else BASELINE,
            )
            for case in cases
        ]
        results = run_interleaved(contenders, options.server_rounds, log)
    finally:
        stop(servers.values())
        for counter in counters.values():
            counter.connection.close()
    load = (load_before, os.getloadavg()[0])
    return render(cases, results, figures, options, prepared, load)


def case_runner(case, servers, counters, prepared, options, workdir, figures):
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
        figures.setdefault(case.name, []).append(
            {
                "p50": timed["p50_us"] / 1e6,
                "p99": timed["p99_us"] / 1e6,
                "rows": (after[0] - before[0]) / requests,
                "database_rows": (after[1] - before[1]) / requests,
                "cpu": cpu / requests,
            }
        )
        return Measurement(seconds=timed["us"] / 1e6, units=timed["requests"])

    return run


def render(cases, results, figures, options, prepared, load):
    by_name = {result.name: result for result in results}

    def rate(case):
        result = by_name[case.name]
        return result.median_rate if result.ok else float("nan")

    def figure(case, key):
        return median([f[key] for f in figures.get(case.name, [])])

    def pair(on, off, fmt):
        return f"{fmt(on)} / {fmt(off)}"

    rows, found = [], {"on_off": {}, "on_off_cpu": {}, "sizes": {}, "sizes_cpu": {}, "rows": []}
    for case in cases:
        if not case.recording:
            continue
        off = Case(case.posts, case.page, case.kind, False)
        key = (case.posts, case.page, case.kind)
        found["on_off"][key] = ratio(rate(case), rate(off))
        found["on_off_cpu"][key] = ratio(figure(off, "cpu"), figure(case, "cpu"))
        found["rows"] += [figure(case, "rows"), figure(off, "rows")]
        rows.append(
            [
                f"{case.posts:,}",
                case.page,
                case.kind,
                pair(rate(case), rate(off), lambda v: f"{v:,.0f}"),
                format_ratio(found["on_off"][key]),
                pair(figure(case, "p50"), figure(off, "p50"), lambda v: f"{v * 1e3:.1f}"),
                pair(figure(case, "p99"), figure(off, "p99"), lambda v: f"{v * 1e3:.0f}"),
                pair(figure(case, "cpu"), figure(off, "cpu"), lambda v: f"{v * 1e3:.2f}"),
                format_ratio(found["on_off_cpu"][key]),
                pair(figure(case, "rows"), figure(off, "rows"), lambda v: f"{v:.3g}"),
                pair(
                    figure(case, "database_rows"),
                    figure(off, "database_rows"),
                    lambda v: f"{v:.3g}",
                ),
            ]
        )
    small, large = min(options.server_posts), max(options.server_posts)
    size_rows = []
    for page in ("1", str(options.server_depth)):
        for kind in KINDS:
            for recording in (True, False):
                big, little = Case(large, page, kind, recording), Case(small, page, kind, recording)
                key = (page, kind, recording)
                found["sizes"][key] = ratio(rate(big), rate(little))
                found["sizes_cpu"][key] = ratio(figure(little, "cpu"), figure(big, "cpu"))
                size_rows.append(
                    [
                        page,
                        kind,
                        "on" if recording else "off",
                        format_ratio(found["sizes"][key]),
                        format_ratio(found["sizes_cpu"][key]),
                    ]
                )
    table = markdown_table(
        [
            "posts", "page", "viewer", "req/s on / off", "on ÷ off", "p50 ms on / off",
            "p99 ms on / off", "CPU ms/request on / off", "CPU off ÷ on",
            "rows written/request on / off", "pg_stat_database on / off",
        ],
        rows,
    )  # fmt: skip
    size_table = markdown_table(
        [
            "page", "viewer", "impressions", f"req/s at {large:,} ÷ at {small:,} posts",
            f"CPU/request at {small:,} ÷ at {large:,}",
        ],
        size_rows,
    )  # fmt: skip
    table_sizes = " and ".join(f"{entry['posts']:,}" for entry in prepared.values())
    intro = (
        "gunicorn (`casusult/gunicorn_conf.py`, `settings.prod`, 3 processes x 4 threads) and"
        f" wrk (Debian's, `-t2 -c{options.server_connections}`, {options.server_duration} s"
        f" timed after {WARM_UP_SECONDS} s of warm-up per case) on the same machine, with"
        f" PostgreSQL and Redis; tables of {table_sizes} posts; `GET /api/timeline/`, page 1 or"
        f" the page {options.server_depth} pages deep (its cursor made untimed); {VIEWERS}"
        " viewers of each kind, cycled by every wrk connection: logged in (a session cookie),"
        " anonymous with a visitor cookie (made the day before), anonymous without cookies (a"
        " User-Agent each). Impressions off = `IMPRESSIONS_ENABLED=false`. Median of"
        f" {options.server_rounds} round(s), cases interleaved; the 4 servers run side by side,"
        " idle but the one under load. Load average (1 min) before and after:"
        f" {load[0]:.1f} and {load[1]:.1f} on {os.cpu_count()} cores.\n\n"
        "- *CPU ms/request*: CPU time of the gunicorn workers, their PostgreSQL backends and"
        " Redis, divided by the requests (warm-up included; wrk's own is not counted). On a"
        " machine that other jobs share, req/s moves with their load; the CPU a request costs"
        " hardly does, so *CPU off ÷ on* is the steadier estimate of the req/s ratio the site"
        " would have on cores of its own.\n"
        "- *Rows written/request*: inserts + updates + deletes in `pg_stat_user_tables` around"
        " each case (the site's connections are ended first, so PostgreSQL has published their"
        " counts); `pg_stat_database` counts system catalogs too. The flush does not run"
        " (`QUEUE_BACKEND=dummy`): it is the worker's batch job (section 2), not a view's."
    )
    return f"{intro}\n\n{table}\n\n{size_table}", found


def headlines(found):
    def span(values):
        values = [v for v in values if v == v]
        return f"**{min(values):.2f}** to {max(values):.2f}" if values else "n/a"

    return [
        f"Real server, req/s at the large table ÷ at the small one, every case:"
        f" {span(found['sizes'].values())} (CPU per request: {span(found['sizes_cpu'].values())});"
        " goal ≥ 0.9.",
        f"Real server, req/s with impressions on ÷ off, every case:"
        f" {span(found['on_off'].values())} (CPU per request: {span(found['on_off_cpu'].values())});"
        " goal ≥ 0.9.",
        f"Real server, database rows written per timeline request: at most"
        f" **{max((v for v in found['rows'] if v == v), default=float('nan')):.3g}** in any case.",
    ]
