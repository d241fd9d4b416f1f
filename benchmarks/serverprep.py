"""Prepares one database for the real-server benchmark, in a process set up like the server.

`python -m benchmarks.serverprep --posts N --viewers V --depth D` (run by benchmarks/server.py
with the server's DATABASE_URL and SECRET_KEY): migrates, fills N posts, makes V logged-in
viewers with sessions and V visitor cookies, and prints them with the cursor of page D as JSON.
"""

import argparse
import json
import secrets
import sys
from datetime import UTC, datetime, timedelta


def prepare(posts, viewers, depth):
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from casusult.models import Post
    from casusult.paging import PAGE_SIZE, Position, encode_cursor
    from impressions.viewers import make_visitor_cookie

    from . import fixtures

    fixtures.migrate()
    fixtures.ensure_posts(posts, log=lambda line: print(line, file=sys.stderr))
    sessions = []
    for user in fixtures.ensure_viewers(viewers):
        # What django.contrib.auth.login() stores, without a request: made once, before timing.
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        sessions.append(session.session_key)
    # Made yesterday: the visitor is known by the cookie's id, not by its first day's digest.
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y%m%d")
    cookies = [make_visitor_cookie(yesterday, secrets.token_hex(16)) for _ in range(viewers)]
    last_before = Post.objects.order_by("-created_at", "-id")[(depth - 1) * PAGE_SIZE - 1]
    return {
        "sessions": sessions,
        "visitor_cookies": cookies,
        "deep_cursor": encode_cursor(Position.of(last_before)),
        "posts": Post.objects.count(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serverprep")
    parser.add_argument("--posts", type=int, required=True)
    parser.add_argument("--viewers", type=int, required=True)
    parser.add_argument("--depth", type=int, required=True)
    options = parser.parse_args(argv)
    import django

    django.setup()
    print(json.dumps(prepare(options.posts, options.viewers, options.depth)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
