"""The portable path on a real SQLite file (the database of `make run`) under concurrency: two
flushes at once, as the worker's scheduled flush and `flush_impressions` (or "Flush now") meet."""

import re
import sqlite3
import subprocess
import sys
import time

from tests.processes import PROJECT_DIR

# Runs in a child process on a fresh SQLite file. Flush B stops before its first batch; flush A
# then runs into its own batch and holds it open (its write lock taken) for a second; B goes on
# meanwhile, as the second of two racing flushes does.
TWO_FLUSHES = """
import json
import threading
import time

import django
django.setup()
from django.core.management import call_command
from django.db import connection

call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
from casusult.models import Post
from impressions import flush
from impressions.models import Flush
from impressions.recorder import record_impressions

assert connection.vendor == "sqlite", connection.vendor
author = get_user_model().objects.create_user("author")
ids = [p.id for p in Post.objects.bulk_create(Post(author=author, body=str(n)) for n in range(5))]
record_impressions("u:1", ids)

a_in_batch = threading.Event()
outcomes = {}


def pause(name):
    if threading.current_thread().name == "A" and name == "before-commit":
        a_in_batch.set()
        time.sleep(1.0)  # A's batch written, not committed: it holds the write lock
    elif threading.current_thread().name == "B" and name == "before-apply":
        record_impressions("u:2", ids[:2])
        a.start()
        a_in_batch.wait(10)


def run(name):
    try:
        outcomes[name] = str(flush.flush_pending())
    except Exception as error:
        outcomes[name] = f"{type(error).__name__}: {error}"
    finally:
        connection.close()


flush.checkpoint = pause
a = threading.Thread(target=run, args=("A",), name="A")
b = threading.Thread(target=run, args=("B",), name="B")
b.start()
b.join()
a.join()
failed = sorted(name for name, text in outcomes.items() if "Error" in text or "Unavailable" in text)
if failed:  # the next flush takes what a failed one left in Redis
    flush.checkpoint = lambda name: None
    flush.flush_pending()
print(json.dumps({
    "outcomes": outcomes,
    "failed": failed,
    "totals": sorted(Post.objects.values_list("impressions", flat=True)),
    "ledger": sorted(Flush.objects.values_list("outcome", flat=True)),
}))
"""


def test_two_flushes_at_once_on_sqlite_both_succeed(on_sqlite):
    out = on_sqlite(TWO_FLUSHES)
    # Before: B's first batch read the ledger, then could not write while A held the lock, and
    # SQLite refused it at once ("database is locked") instead of waiting for A's commit.
    assert out["failed"] == [], out["outcomes"]
    assert out["totals"] == [1, 1, 1, 2, 2]  # exact either way: a failed flush loses nothing


def test_a_command_started_while_another_holds_the_write_lock_waits_for_it(sqlite_env, tmp_path):
    """flush_impressions started while another connection writes for 7 s (a long batch, a
    migration) waits, flushes, and exits 0."""
    env = sqlite_env
    database = tmp_path / "db.sqlite3"
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=PROJECT_DIR, env=env, check=True, timeout=120)
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("DELETE FROM impressions_flush")
    flush = subprocess.Popen(
        [*manage, "flush_impressions"],
        cwd=PROJECT_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(7)
    writer.execute("COMMIT")
    output, _ = flush.communicate(timeout=60)
    # Before: Django's system checks ran first; their probe of SQLite's JSON support, a
    # transaction begun IMMEDIATE, gave up after the 5 s busy timeout, and the command failed
    # with "impressions.Flush: (fields.E180) SQLite does not support JSONFields."
    assert flush.returncode == 0, output


def check_ids(sqlite_env, url):
    """The impressions check ids `manage.py check` reports for DATABASE_URL=url."""
    child = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=PROJECT_DIR,
        env={**sqlite_env, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return set(re.findall(r"impressions\.[EW]\d+", child.stdout + child.stderr))


def test_sqlite_without_immediate_transactions_is_warned_of(sqlite_env, tmp_path):
    """impressions.W009: on SQLite's default DEFERRED transactions two flushes at once fail."""
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    assert check_ids(sqlite_env, f"{url}?transaction_mode=DEFERRED") == {"impressions.W009"}
    assert check_ids(sqlite_env, url) == set()  # the demo site's: IMMEDIATE
