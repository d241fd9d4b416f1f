"""impressions.testing, for a project's own tests: each test starts from an empty buffer, and test
processes sharing one Redis keep their counts apart by IMPRESSIONS_KEY_PREFIX."""

import pytest
from django.test import override_settings

import impressions
from impressions.recorder import record_impressions
from impressions.testing import empty_buffer
from tests.factories import make_posts

from .support import scan_all

pytestmark = pytest.mark.django_db

# Keys of another prefix ("imp-2", "imp:x", a test process's and a neighbour's) and of other apps
# on the same Redis: not this buffer's, so they stay.
FOREIGN = ["other:1", "{imp-2}:flush-scheduled", "{imp-2:3}:totals", "{imp:x}:k", "imp:totals"]


@override_settings(IMPRESSIONS_REDIS_TIMEOUT=10.0)  # exact counts, a loaded machine
def test_a_view_counts_again_after_empty_buffer_as_in_a_new_test(buffer):
    """Before: a project's test emptied Redis (FLUSHDB) between two tests whose objects had the
    same ids (SQLite's rolled-back sequences), and the second test's view counted nothing: the
    process still knew the pair was seen (reloads.py) and skipped Redis."""
    [post] = make_posts(1)
    assert record_impressions("u:1", [post.id]).counted == 1
    assert impressions.pending_counts([post.id]) == {post.id: 1}

    empty_buffer()

    assert impressions.pending_counts([post.id]) == {post.id: 0}
    assert not impressions.buffer_status().flush_scheduled
    assert record_impressions("u:1", [post.id]).counted == 1  # the next test's first view
    assert impressions.pending_counts([post.id]) == {post.id: 1}


def test_empty_buffer_deletes_only_its_prefix_s_keys(buffer):
    for key in FOREIGN:
        buffer.set(key, "1")
    [post] = make_posts(1)
    record_impressions("u:1", [post.id])

    empty_buffer()

    assert sorted(scan_all(buffer)) == sorted(FOREIGN)


@override_settings(IMPRESSIONS_REDIS_TIMEOUT=10.0)  # exact counts, a loaded machine
def test_two_test_processes_keep_their_counts_apart_by_key_prefix(standalone_buffer):
    """Two test processes (manage.py test --parallel, pytest-xdist) each have a database of its
    own, where the same ids name other objects, and one Redis: each takes a prefix of its own."""
    [post] = make_posts(1)
    with override_settings(IMPRESSIONS_KEY_PREFIX="imp-test_1"):
        record_impressions("u:1", [post.id])
    with override_settings(IMPRESSIONS_KEY_PREFIX="imp-test_2"):
        record_impressions("u:1", [post.id])
        record_impressions("u:2", [post.id])
        assert impressions.pending_counts([post.id]) == {post.id: 2}
        empty_buffer()
    with override_settings(IMPRESSIONS_KEY_PREFIX="imp-test_1"):
        assert impressions.pending_counts([post.id]) == {post.id: 1}
        empty_buffer()
    assert scan_all(standalone_buffer) == []


def test_empty_buffer_leaves_redis_alone_while_recording_is_off(private_redis):
    """A CI without Redis turns recording off (IMPRESSIONS_ENABLED = False): the tests' views
    call no Redis, and neither does empty_buffer() in their setUp. Before, it raised the
    connection error in every test (or waited for the timeout of a host that does not answer)."""
    private_redis.stop()
    with override_settings(IMPRESSIONS_REDIS_URL=private_redis.url, IMPRESSIONS_ENABLED=False):
        empty_buffer()
