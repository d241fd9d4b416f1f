"""python -m devservices ensure|supervise: check and start local services, or run commands together."""

import argparse
import os
import sys

from .exceptions import ServiceUnavailable
from .postgres import ensure_postgres
from .processes import supervise
from .redis_server import ensure_redis


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
    run = sub.add_parser("supervise", help="run commands together; Ctrl-C stops them all")
    run.add_argument("commands", nargs="+")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
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
