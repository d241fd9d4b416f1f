"""What the numbers were measured on: cores, CPU, memory, and every version that matters."""

import datetime
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_total():
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def package_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def git_commit(cwd=None):
    """HEAD's short hash, and whether the code measured differs from it (changes to tracked
    files outside the docs and the results, which a run itself writes)."""
    completed = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
    )
    commit = completed.stdout.strip()
    if not commit:
        return "unknown"
    changed = subprocess.run(
        ["git", "diff", "--name-only", "HEAD", "--", ".", ":(exclude)docs", ":(exclude)*.md"],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
    ).stdout.split()
    if changed:
        return f"{commit} + uncommitted changes to {len(changed)} file(s)"
    return commit


def describe(redis_client):
    """Rows of (what, value) for the results file."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
        # The server settings the flush and the roll-up are most sensitive to.
        cursor.execute(
            "SELECT string_agg(name || ' ' || current_setting(name), ', ' ORDER BY name)"
            " FROM pg_settings WHERE name IN ('shared_buffers', 'max_wal_size', 'autovacuum',"
            " 'wal_compression', 'synchronous_commit')"
        )
        settings = cursor.fetchone()[0]
    redis_info = redis_client.info("server")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        ("date (UTC)", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")),
        ("git commit", git_commit()),
        ("cores usable / online", f"{cores} / {os.cpu_count()}"),
        ("CPU", cpu_model()),
        ("memory", memory_total()),
        ("OS", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("Python", platform.python_version()),
        ("Django", package_version("Django")),
        ("psycopg", package_version("psycopg")),
        ("redis-py / hiredis", f"{package_version('redis')} / {package_version('hiredis')}"),
        ("PostgreSQL server", postgres),
        ("PostgreSQL settings", settings),
        ("Redis server", f"{redis_info.get('redis_version')} ({redis_info.get('redis_mode')})"),
    ]
