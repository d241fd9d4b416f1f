"""An adopter on psycopg2 (Django takes it when psycopg 3 is not installed): the flush, its
ledger and its history on PostgreSQL through psycopg2, in a child process that cannot import
psycopg 3 (psycopg2_env), on the test database."""

import json

import pytest
from django.db import connection

from impressions import history_writer
from tests.database import other_connection
from tests.processes import on_psycopg2, run_python

from .support import subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def psycopg2_env(standalone_buffer, tmp_path):
    """The environment of a child process on the test database through psycopg2, and the
    buffer's Redis."""
    return subprocess_env(connection, **on_psycopg2(tmp_path))


# Records views of five posts, applies them in batches of two lines, the second batch
# failing before its commit (the first committed), then flushes again (the rest, from the
# ledger's marks), and once more (nothing left).
FLUSH_TWICE = """
import json

import django
django.setup()
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection

from casusult.models import Post
from impressions import flush
from impressions.models import Flush, OpenDailyImpressions, SiteDailyImpressions
from impressions.recorder import record_impressions

author = get_user_model().objects.create_user("author")
ids = [p.id for p in Post.objects.bulk_create(Post(author=author, body=str(n)) for n in range(5))]
for viewer in ("u:1", "u:2", "u:3"):
    record_impressions(viewer, ids)
record_impressions("u:4", ids[:2])
record_impressions("u:1", ids)  # a reload: counted once
batches = []


def fail_the_second_batch(name):
    if name == "before-commit":
        batches.append(name)
        if len(batches) == 2:
            raise RuntimeError("stopped before the second batch's commit")


flush.checkpoint = fail_the_second_batch
try:
    flush.flush_pending(batch_size=2)
except RuntimeError:
    pass
after_failure = sorted(Post.objects.values_list("impressions", flat=True))
flush.checkpoint = lambda name: None
call_command("flush_impressions", "--batch-size", "2")
call_command("flush_impressions")
print(json.dumps({
    "driver": connection.Database.__name__,
    "after_failure": after_failure,
    "totals": [Post.objects.get(id=i).impressions for i in ids],
    "history": sorted(OpenDailyImpressions.objects.values_list("object_id", "count")),
    "site": list(SiteDailyImpressions.objects.values_list("count", flat=True)),
    "posts": ids,
    "ledger": sorted(Flush.objects.values_list("outcome", flat=True)),
}))
"""


def test_the_flush_on_psycopg2_counts_each_view_once(psycopg2_env):
    child = run_python(FLUSH_TWICE, env=psycopg2_env)
    assert child.returncode == 0, child.stderr
    out = json.loads(child.stdout.strip().splitlines()[-1])
    assert out["driver"] == "psycopg2"
    # The first batch committed, the second did not.
    assert 0 < sum(out["after_failure"]) < 17
    assert out["totals"] == [4, 4, 3, 3, 3]
    first, second, *rest = out["posts"]
    assert out["history"] == sorted([[first, 4], [second, 4], *([post, 3] for post in rest)])
    assert out["site"] == [17]
    # The failed flush's snapshot, applied by the next from its marks; the two commands' own
    # flushes found nothing more to count.
    assert out["ledger"] == ["applied", "empty", "empty"]


# A flush on a session that takes no writes fails naming why (read from the error's SQLSTATE);
# the next, on a new session, applies the counts.
FLUSH_AFTER_A_REFUSAL = """
import json

import django
django.setup()
from django.contrib.auth import get_user_model
from django.db import connection

from casusult.models import Post
from impressions import flush
from impressions.exceptions import DatabaseUnavailable
from impressions.recorder import record_impressions

author = get_user_model().objects.create_user("author")
ids = [p.id for p in Post.objects.bulk_create(Post(author=author, body=str(n)) for n in range(2))]
record_impressions("u:1", ids)
record_impressions("u:2", ids)
with connection.cursor() as cursor:
    cursor.execute("SET SESSION default_transaction_read_only = on")
try:
    flush.flush_pending()
    refused = ""
except DatabaseUnavailable as error:
    refused = str(error)
connection.close()
flush.flush_pending()
print(json.dumps({
    "refused": refused,
    "totals": sorted(Post.objects.values_list("impressions", flat=True)),
}))
"""


def test_a_flush_on_psycopg2_reads_the_database_s_error_codes(psycopg2_env):
    """The flush reads PostgreSQL's codes (SQLSTATE) from psycopg2's errors too: the hint of a
    read-only session, and a roll-up holding the lock that says a flush runs, which a flush goes
    on without (it failed on psycopg2: the lock's timeout was not recognized)."""
    with other_connection(autocommit=True) as rollup:
        rollup.execute(
            "SELECT pg_advisory_lock(%s, %s)",
            [history_writer.LOCK_CLASS, history_writer.FLUSH_LOCK],
        )
        child = run_python(FLUSH_AFTER_A_REFUSAL, env=psycopg2_env)
    assert child.returncode == 0, child.stderr
    out = json.loads(child.stdout.strip().splitlines()[-1])
    assert "takes no writes" in out["refused"]
    assert out["totals"] == [2, 2]
