"""PostgreSQL: start the local cluster when it is down, create a database when it is missing."""

import shutil
import subprocess
import urllib.parse

import psycopg

from .exceptions import ServiceUnavailable
from .ports import is_listening
from .processes import wait_until
from .redis_server import LOOPBACK


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

    For the load test and the benchmarks, which own their databases.
    """
    name, maintenance = _database_and_maintenance(url)
    with psycopg.connect(maintenance, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')
            return f"created database {name}"
    return f"database {name} exists"


def drop_database(url):
    """DROP DATABASE (closing its sessions) for a PostgreSQL `url`; returns what it did.

    For tests that own a database outside Django's test database (the load test's): each session
    starts from an empty one, never from tables another checkout's migrations left behind.
    """
    name, maintenance = _database_and_maintenance(url)
    with psycopg.connect(maintenance, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return f"dropped database {name}"


def _database_and_maintenance(url):
    """The database `url` names, and the URL of the server's `postgres` database beside it."""
    parts = urllib.parse.urlsplit(url)
    name = parts.path.lstrip("/")
    if not name:
        raise ValueError(f"{url!r} names no database")
    return name, urllib.parse.urlunsplit(parts._replace(path="/postgres"))
