"""python -m loadtest: browse the real stack for a while, flush, compare the database exactly."""

import argparse
import os
import sys

import django

from casusult.arguments import non_negative_int, positive_int

# A grown site: COUNT(*) and deep pages cost what they cost at this size, not at 500 posts.
DEFAULT_POSTS = 100_000


def positive_seconds(text):
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0")
    return seconds


def parser():
    p = argparse.ArgumentParser(
        prog="python -m loadtest",
        description="Load test: gunicorn (settings.prod) + runworker on SQS + a private Redis,"
        " many browsing clients for a fixed time, then a flush and an exact comparison with the"
        " database. Exits 1 on any 5xx or a count outside the expected range. Needs DATABASE_URL"
        " to name a PostgreSQL database the test may create and write (it seeds demo data there).",
    )
    p.add_argument("--clients", type=positive_int, default=50)
    p.add_argument(
        "--logged-in", type=non_negative_int, default=None, help="of which logged in (default 40%%)"
    )
    p.add_argument("--duration", type=positive_seconds, default=60.0, help="seconds of load")
    p.add_argument("--users", type=positive_int, default=20, help="demo users to seed")
    p.add_argument(
        "--posts",
        type=positive_int,
        default=DEFAULT_POSTS,
        help="posts the database must hold, topped up in one INSERT (default %(default)s)",
    )
    p.add_argument("--gunicorn-workers", type=positive_int, default=2)
    p.add_argument("--gunicorn-threads", type=positive_int, default=4)
    p.add_argument("--think-ms", type=float, default=0.0, help="max pause per request")
    p.add_argument(
        "--redis-outage",
        action="store_true",
        help="stop the buffer's Redis for the middle third of the run, then start it again",
    )
    p.add_argument(
        "--then-redis-outage",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="after the run, a second one of SECONDS with --redis-outage on the same stack (no"
        " second migrate, seeding, moto or Redis): its servers restarted on an emptied buffer,"
        " with the setting's Redis timeout whatever --redis-timeout says",
    )
    p.add_argument(
        "--redis-timeout",
        type=positive_seconds,
        default=None,
        help="the web's IMPRESSIONS_REDIS_TIMEOUT (default: the setting's, 0.05 s); a call slower"
        " than it drops its impressions by design, which the exact checks then count as missing",
    )
    p.add_argument("--seed", type=int, default=1, help="random seed of the clients")
    p.add_argument("--keep", action="store_true", help="keep the server logs")
    return p


def main(argv=None):
    options = parser().parse_args(argv)
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")):
        sys.exit(
            "error: set DATABASE_URL to a PostgreSQL database for the load test (it is created if"
            " missing, then migrated and seeded), e.g. postgres://postgres@127.0.0.1:5432/loadtest."
        )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.test")
    django.setup()
    # Imported once Django is set up: the runner imports the site's models.
    from .runner import run

    return 0 if run(options, database_url) else 1


if __name__ == "__main__":
    sys.exit(main())
