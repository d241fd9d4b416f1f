"""Local services for `make run` and `make test`: check, start what is missing, say what is not.

Standard library only: it runs before Django is configured. Production never uses this module.
"""

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
STATE_DIR = PROJECT_DIR / ".local"
LOOPBACK = {"127.0.0.1", "localhost", "::1", ""}


class ServiceUnavailable(RuntimeError):
    """A service the caller needs is not reachable and could not be started here."""


def is_listening(host, port, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# A cluster node also listens on its port + 10000 (the cluster bus), so that port must be free too.
CLUSTER_BUS_OFFSET = 10000
_handed_out = set()


def ephemeral_port_range():
    """The kernel's range for outgoing connections' local ports (Linux; the IANA range elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49152, 65535


def _bindable(port):
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(bus_offset=0):
    """A free loopback port for a server we are about to start (and port + bus_offset, if given).

    The port is picked outside the kernel's ephemeral range: a port the kernel hands out (bind to
    port 0) can be taken by any outgoing connection (a database client, boto3) before our server
    binds it, which made start-up fail with EADDRINUSE now and then. Ports are never handed out
    twice by one process.
    """
    low, high = ephemeral_port_range()
    spans = [(10000, low - 1 - bus_offset), (high + 1, 65535 - bus_offset)]
    spans = [(first, last) for first, last in spans if last - first >= 100]
    rng = random.SystemRandom()
    for _ in range(500):
        if not spans:
            break
        first, last = rng.choice(spans)
        port = rng.randint(first, last)
        wanted = [port, port + bus_offset] if bus_offset else [port]
        if any(p in _handed_out for p in wanted) or not all(_bindable(p) for p in wanted):
            continue
        _handed_out.update(wanted)
        return port
    raise ServiceUnavailable(
        f"no free loopback port outside the ephemeral range {low}-{high} (bus offset {bus_offset})"
    )


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise ServiceUnavailable(f"{what} did not come up within {timeout:.0f} s")


def redis_ping(host, port):
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_command(port, *args):
    """Run redis-cli against a loopback port and return its output."""
    return subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout


def start_redis_server(port, workdir, *extra):
    """Start a throw-away redis-server on a loopback port; returns the process."""
    if not shutil.which("redis-server"):
        raise ServiceUnavailable(
            "redis-server is not installed: install it (Debian: apt-get install redis-server)"
            " or point REDIS_URL at a running Redis."
        )
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            "redis-server",
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(workdir),
            "--logfile", str(workdir / f"redis-{port}.log"),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    wait_until(lambda: redis_ping("127.0.0.1", port), 10, f"redis-server on port {port}")
    return process


def ensure_redis(url):
    """Make sure the Redis at `url` answers; start a private one on loopback if nothing listens."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if host not in LOOPBACK:
        return f"Redis at {host}:{port} is not local: not checked here"
    if redis_ping(host, port):
        return f"Redis is up at {host}:{port}"
    if is_listening(host, port):
        raise ServiceUnavailable(f"Something listens on {host}:{port} but it is not Redis.")
    workdir = STATE_DIR / "redis"
    start_redis_server(port, workdir, "--daemonize", "yes", "--pidfile", str(workdir / "redis.pid"))
    return (
        f"Started a private redis-server on 127.0.0.1:{port} (stop: redis-cli -p {port} shutdown)"
    )


def ensure_postgres(url):
    """Make sure the PostgreSQL server of `url` accepts connections; start the local cluster if not."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    if host not in LOOPBACK:
        return f"PostgreSQL at {host}:{port} is not local: not checked here"
    if is_listening(host, port):
        return f"PostgreSQL is up at {host}:{port}"
    if shutil.which("pg_ctlcluster") and shutil.which("pg_lsclusters"):
        clusters = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout
        for line in clusters.splitlines():
            version, name, cluster_port = line.split()[:3]
            if int(cluster_port) == port:
                subprocess.run(
                    ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "start"],
                    check=False,
                )
                wait_until(lambda: is_listening(host, port), 30, "PostgreSQL")
                return f"Started PostgreSQL cluster {version}/{name} on port {port}"
    raise ServiceUnavailable(
        f"PostgreSQL is not running on {host}:{port} and no local cluster could be started."
        " Install it (Debian: apt-get install postgresql), allow trust or password auth for"
        " 127.0.0.1, or set DATABASE_URL to a reachable server."
    )


def ensure_database(url):
    """CREATE DATABASE for a PostgreSQL `url` when it does not exist; returns what it did.

    For the load test and the benchmarks, which own their databases. Needs psycopg (the venv).
    """
    import psycopg

    parts = urllib.parse.urlsplit(url)
    name = parts.path.lstrip("/")
    if not name:
        raise ValueError(f"{url!r} names no database")
    maintenance = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')
            return f"created database {name}"
    return f"database {name} exists"


class RedisClusterProcess:
    """A real 3-master Redis Cluster on free loopback ports, for tests and benchmarks."""

    def __init__(self, nodes=3):
        self.ports = [free_port(bus_offset=CLUSTER_BUS_OFFSET) for _ in range(nodes)]
        self.workdir = Path(tempfile.mkdtemp(prefix="casusult-cluster-"))
        self.processes = []

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self):
        try:
            return self._start()
        except ServiceUnavailable:
            self.stop()  # do not leave the nodes that did start running
            raise

    def _start(self):
        for port in self.ports:
            node_dir = self.workdir / str(port)
            self.processes.append(
                start_redis_server(
                    port,
                    node_dir,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(node_dir / "nodes.conf"),
                    "--cluster-node-timeout",
                    "2000",
                )
            )
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        created = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *nodes,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if created.returncode != 0:
            self.stop()
            raise ServiceUnavailable(f"redis-cli --cluster create failed: {created.stdout[-500:]}")
        wait_until(self.is_ready, 30, "Redis Cluster")
        return self

    def is_ready(self):
        return all(
            "cluster_state:ok" in redis_command(port, "cluster", "info") for port in self.ports
        )

    def stop(self):
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


class MotoServerProcess:
    """moto in server mode: an SQS-protocol server over HTTP on a free loopback port."""

    def __init__(self):
        self.port = free_port()
        self.process = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        try:
            import moto.server  # noqa: F401
        except ImportError as error:
            raise ServiceUnavailable(
                "moto[server] is not installed in this environment: run `make test` "
                "(it installs requirements-dev.txt) or pip install 'moto[server]'."
            ) from error
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(self._answers, 30, "moto server")
        return self

    def _answers(self):
        try:
            with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                return True
        except OSError:
            return False

    def stop(self):
        if self.process:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def supervise(commands):
    """Run commands side by side until one exits or Ctrl-C / SIGTERM; then stop them all."""
    processes = [
        subprocess.Popen(command, shell=True, start_new_session=True) for command in commands
    ]
    stopping = []

    def request_stop(signum, _frame):
        stopping.append(signum)

    # Installed explicitly: a shell that starts us in the background ignores SIGINT by default.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    while not stopping and all(process.poll() is None for process in processes):
        time.sleep(0.2)
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    failed = [p.returncode for p in processes if p.returncode not in (0, -signal.SIGTERM)]
    return 1 if failed and not stopping else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    ensure = sub.add_parser("ensure", help="check PostgreSQL (when DATABASE_URL uses it) and Redis")
    ensure.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    ensure.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    run = sub.add_parser("supervise", help="run commands together; Ctrl-C stops them all")
    run.add_argument("commands", nargs="+")
    args = parser.parse_args(argv)

    if args.action == "supervise":
        return supervise(args.commands)
    try:
        if args.database_url.startswith(("postgres://", "postgresql://", "pgsql://")):
            print(ensure_postgres(args.database_url))
        print(ensure_redis(args.redis_url))
    except ServiceUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
