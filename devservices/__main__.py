"""python -m devservices ensure|supervise: check and start local services, or run commands together."""

import argparse
import os
import sys
from pathlib import Path

from .exceptions import ServiceUnavailable
from .postgres import ensure_postgres
from .processes import stop_process, supervise
from .redis_server import STATE_DIR, ensure_redis, start_missing_redis


def parser():
    p = argparse.ArgumentParser(
        prog="python -m devservices",
        description="Local services for make run and make test: check, start what is missing,"
        " say what is not.",
    )
    sub = p.add_subparsers(dest="action", required=True)
    ensure = sub.add_parser("ensure", help="check PostgreSQL (when DATABASE_URL uses it) and Redis")
    ensure.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    ensure.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    ensure.add_argument(
        "--no-redis",
        action="store_true",
        help="check the database only (make run starts its Redis under supervise)",
    )
    run = sub.add_parser("supervise", help="run commands together; Ctrl-C stops them all")
    run.add_argument(
        "--redis-url",
        action="append",
        default=[],
        help="a Redis the commands need: when none answers on its local port, one is started"
        " for as long as they run, then stopped (repeat for several)",
    )
    run.add_argument(
        "--state-dir",
        type=Path,
        default=STATE_DIR,
        help="where a Redis started here keeps its data between runs (default: .local)",
    )
    run.add_argument("commands", nargs="+")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    if args.action == "supervise":
        return supervise_with_redis(args)
    try:
        if args.database_url.startswith(("postgres://", "postgresql://", "pgsql://")):
            print(ensure_postgres(args.database_url))
        if not args.no_redis:
            print(ensure_redis(args.redis_url))
    except ServiceUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def supervise_with_redis(args):
    """supervise(), with the Redis servers it needs started first and stopped last."""
    try:
        servers = start_missing_redis(args.redis_url, args.state_dir / "redis")
    except ServiceUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for server in servers:
        print(f"Started redis-server (pid {server.pid}); Ctrl-C stops it too.", flush=True)
    try:
        return supervise(args.commands)
    finally:
        for server in servers:
            stop_process(server, timeout=30)  # SIGTERM: it saves its data, then exits


if __name__ == "__main__":
    sys.exit(main())
