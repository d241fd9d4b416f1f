"""Standalone Redis: ping one, run redis-cli against it, start a private redis-server."""

import re
import shutil
import socket
import ssl
import subprocess
import urllib.parse
from pathlib import Path

from .exceptions import ServiceUnavailable
from .ports import is_listening
from .processes import stop_process, wait_until

PROJECT_DIR = Path(__file__).resolve().parent.parent
STATE_DIR = PROJECT_DIR / ".local"
LOOPBACK = {"127.0.0.1", "localhost", "::1", ""}


def redis_ping(host, port, context=None):
    """Whether a Redis answers PING at host:port; over TLS with the ssl `context`, if given."""
    return _ask(host, port, context, b"PING").startswith(b"+PONG")


def url_context(url):
    """The ssl context a client of a rediss:// URL verifies the server with (the CA of its
    ?ssl_ca_certs=, else the system's); None for any other scheme."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "rediss":
        return None
    ca = urllib.parse.parse_qs(parts.query).get("ssl_ca_certs", [None])[0]
    try:
        return ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as error:
        raise ServiceUnavailable(f"Cannot read the CA of the Redis URL ({ca}): {error}") from None


def redis_pid(host, port, context=None):
    """The process id of the Redis answering at host:port (its INFO server), or None."""
    found = re.search(rb"\r\nprocess_id:(\d+)\r\n", _ask(host, port, context, b"INFO server"))
    return int(found.group(1)) if found else None


def _ask(host, port, context, command):
    """The whole reply of the Redis at host:port to one inline command; b"" if none came."""
    reply = b""
    try:
        with (
            socket.create_connection((host, port), timeout=1) as raw,
            context.wrap_socket(raw, server_hostname=host) if context else raw as sock,
        ):
            sock.sendall(command + b"\r\n")
            while b"\r\n" not in reply or len(reply) < _reply_size(reply):
                if not (chunk := sock.recv(65536)):
                    break
                reply += chunk
    except OSError:  # ssl.SSLError too
        return b""
    return reply


def _reply_size(reply):
    """The whole size of the RESP reply that starts with `reply`: a bulk string's header says;
    any other (a status, an error) is one line."""
    header, _, _ = reply.partition(b"\r\n")
    if not header.startswith(b"$") or not header[1:].isdigit():
        return len(reply)
    return len(header) + 2 + int(header[1:]) + 2


def redis_command(port, *args, tls=None):
    """Run redis-cli against a loopback port (over TLS with `tls`) and return its output."""
    return subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *(tls.cli_args() if tls else []), *args],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout


def start_redis_server(port, workdir, *extra, persist=False, tls=None):
    """Start a redis-server on a loopback port; returns the process.

    Throw-away unless `persist`: then it loads and, when stopped, saves `workdir`/dump-<port>.rdb,
    so pending impressions survive a restart of `make run`. With `tls` (devservices.TlsFiles) the
    port speaks TLS only, as ElastiCache with encryption in transit does.
    """
    if not shutil.which("redis-server"):
        raise ServiceUnavailable(
            "redis-server is not installed: install it (Debian: apt-get install redis-server)"
            " or point REDIS_URL at a running Redis."
        )
    # Absolute: redis-server changes to --dir before it opens --logfile, so a relative pair
    # (make run's `.local/redis`) would name a log file inside itself and it would not start.
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    plain = ["--port", str(port)]
    listen = ["--port", "0", "--tls-port", str(port), *tls.server_args()] if tls else plain
    process = subprocess.Popen(
        [
            "redis-server",
            *listen,
            "--bind", "127.0.0.1",
            *(["--dbfilename", f"dump-{port}.rdb"] if persist else ["--save", ""]),
            "--appendonly", "no",
            "--dir", str(workdir),
            "--logfile", str(workdir / f"redis-{port}.log"),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    context = tls.client_context() if tls else None

    def answers():
        # Ours, not another's that took the port first (its PING would answer in ours' place).
        pid = redis_pid("127.0.0.1", port, context)
        if pid is not None and pid != process.pid:
            raise ServiceUnavailable(
                f"port {port} is taken by another redis-server (pid {pid}): ours did not start"
            )
        return pid is not None

    try:
        wait_until(answers, 10, f"redis-server on port {port}")
    except BaseException:
        stop_process(process)  # in a session of its own: nothing else would stop it
        raise
    return process


def start_missing_redis(urls, workdir):
    """A redis-server (kept in `workdir`, not daemonized) for each local URL where none answers.

    Returns the processes started, for the caller to stop; a Redis already running is not ours.
    """
    started = []
    local = {}  # port: the first URL naming it
    for url in urls:
        if port := _local_port(url):
            local.setdefault(port, url)
    try:
        for port, url in sorted(local.items()):
            if not _answers(url):
                started.append(start_redis_server(port, workdir, persist=True))
    except BaseException:
        for process in started:
            stop_process(process)
        raise
    return started


def _answers(url):
    """True when the Redis of `url` answers (over TLS for rediss://, by the URL's host name);
    False when nothing listens there and a plain redis-server may be started; raises otherwise."""
    host, port = _address(url)
    context = url_context(url)
    if redis_ping(host, port, context):
        return True
    if is_listening(host, port):
        what = "no Redis answers over TLS with the CA of its URL" if context else "it is not Redis"
        raise ServiceUnavailable(f"Something listens on {host}:{port} but {what}.")
    if context:
        raise ServiceUnavailable(
            f"No Redis answers on {host}:{port}; a rediss:// URL needs a TLS Redis, which is not"
            " started here: start it, or use a redis:// URL."
        )
    return False


def _address(url):
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def _local_port(url):
    host, port = _address(url)
    return port if host in LOOPBACK else None


def ensure_redis(url):
    """Make sure the Redis at `url` answers; start a private one on loopback if nothing listens."""
    host, port = _address(url)
    if host not in LOOPBACK:
        return f"Redis at {host}:{port} is not local: not checked here"
    if _answers(url):
        return f"Redis is up at {host}:{port}"
    workdir = STATE_DIR / "redis"
    start_redis_server(port, workdir, "--daemonize", "yes", "--pidfile", str(workdir / "redis.pid"))
    return (
        f"Started a private redis-server on 127.0.0.1:{port} (stop: redis-cli -p {port} shutdown)"
    )
