"""A flush of 100,000 distinct posts: complete and correct, in batched statements."""

import math
import time

import pytest
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext

from casusult.models import Post
from impressions.conf import conf
from impressions.flush import flush_pending
from impressions.recorder import buffer_status, record_impressions
from tests.factories import insert_posts, make_user

pytestmark = pytest.mark.django_db

POSTS = 100_000


def test_flush_of_100k_distinct_posts(standalone_buffer):
    ids = insert_posts(POSTS, make_user("prolific"))
    # The statistics a table of 100,000 rows has in production (autovacuum analyzes it once
    # the rows commit; here they never do). Without them, the planner went by what an earlier
    # test of the process had left (5 rows over 1,500 pages, the rest deleted): it estimated
    # 8 rows, joined each batch's totals to a sequential scan of the table instead of its
    # primary key, and the test took 7 minutes instead of 5 s.
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Post._meta.db_table}")
    for start in range(0, POSTS, 100):  # 1,000 viewers, 100 posts each
        record_impressions(f"u:{start}", ids[start : start + 100])
    record_impressions("u:again", ids[:10])  # a few posts seen twice
    counters = buffer_status(timeout=10).pending_entries  # one per shard, post and day

    started = time.monotonic()
    with CaptureQueriesContext(connection) as queries:
        report = flush_pending()
    elapsed = time.monotonic() - started

    assert report.posts_updated == POSTS
    assert report.impressions_applied == POSTS + 10
    assert Post.objects.aggregate(total=Sum("impressions"))["total"] == POSTS + 10
    assert Post.objects.filter(impressions=1).count() == POSTS - 10
    updates = [q for q in queries.captured_queries if 'UPDATE "casusult_post"' in q["sql"]]
    # One statement per batch of IMPRESSIONS_FLUSH_BATCH_SIZE counters.
    assert len(updates) == math.ceil(counters / conf.FLUSH_BATCH_SIZE)
    print(f"\n100k-post flush: {elapsed:.2f} s ({report})")
