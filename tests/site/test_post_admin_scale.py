"""The Post list at production size: each of its pages reads the posts table twice whatever its
number of posts (the paginator's count and the page's rows), searched, sorted or filtered."""

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.factories import make_posts

pytestmark = pytest.mark.django_db

POSTS = "/admin/casusult/post/"


def week_ago():
    return "?" + urlencode({"created_at__gte": (timezone.now() - timedelta(days=7)).isoformat()})


# A callable made at the test's time: a parameter's id must be the same in each xdist process.
@pytest.mark.parametrize("query", ["", "?q=post+1", "?o=-5", "?p=1", week_ago])
def test_a_post_list_page_reads_the_posts_table_twice(admin_client, query):
    if callable(query):
        query = query()
    # At 1,000,000 posts the date drill-down's two reads (its first and last day, then every
    # post's month) and a second count of every post for "(N total)" added 0.6 s to the list,
    # 2.6 s to a search: each read every post again.
    make_posts(3)
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(f"{POSTS}{query}")
    assert response.status_code == 200
    reads = [q["sql"] for q in queries.captured_queries if 'FROM "casusult_post"' in q["sql"]]
    assert len(reads) == 2, reads
    assert sum(sql.startswith("SELECT COUNT(*)") for sql in reads) == 1
