"""The buffer's Redis emptied or restored to an older state: the next flush says so.

Redis is the record until a flush (docs/impressions/counting.md#redis-is-the-record-until-a-flush):
a buffer emptied (a restart without persistence, FLUSHDB, ElastiCache data loss) loses its pending
counts, and one restored from a backup taken before a flush counts that flush's window again.
Neither can be undone by the app, but an operator must be able to see it: before, nothing did (a
log line, a metric), and the counts were silently lost or doubled."""

import logging

import pytest
from django.core.management import call_command
from django.test import override_settings

from casusult.models import Post
from impressions import flush as flush_module
from impressions import keys
from impressions.flush import flush_pending
from impressions.recorder import record_impressions
from impressions.signals import buffer_went_back
from tests.factories import make_posts

from .support import flush_redis, scan_all

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def one_second_apart(monkeypatch):
    """Flush ids a second apart (the check compares their seconds), without waiting for it."""
    seconds = iter(range(10, 60))
    monkeypatch.setattr(
        flush_module, "new_flush_id", lambda: f"20261207T1200{next(seconds):02d}-0123abcd"
    )


@pytest.fixture
def went_back():
    seen = []

    def receiver(sender, kind, last_applied, buffer_mark, **kwargs):
        seen.append((kind, last_applied, buffer_mark))

    buffer_went_back.connect(receiver, dispatch_uid="test-buffer-went-back")
    yield seen
    buffer_went_back.disconnect(dispatch_uid="test-buffer-went-back")


def counts(posts):
    return sorted(
        Post.objects.filter(id__in=[p.id for p in posts]).values_list("impressions", flat=True)
    )


def test_normal_flushes_say_nothing(standalone_buffer, went_back):
    posts = make_posts(2)
    for viewer in range(3):
        record_impressions(f"n:{viewer}", [p.id for p in posts])
        flush_pending()
        for part in range(2):
            flush_pending(part=part, parts=2)
    assert went_back == []
    assert counts(posts) == [3, 3]


def a_window_flushed_and_one_pending():
    """Two posts, a view of each flushed, another pending; returns (posts, ids, the flush)."""
    posts = make_posts(2)
    ids = [p.id for p in posts]
    record_impressions("v:1", ids)
    first = flush_pending()
    record_impressions("v:2", ids)
    return posts, ids, first


def logged(caplog, words, flush_id):
    return any(words in r.getMessage() and flush_id in r.getMessage() for r in caplog.records)


def test_an_emptied_buffer_is_reported(standalone_buffer, went_back, caplog):
    posts, ids, first = a_window_flushed_and_one_pending()
    flush_redis(standalone_buffer)  # the buffer's data lost mid-window: v:2's counts with it
    with caplog.at_level(logging.ERROR, logger="impressions.flush"):
        flush_pending()
    assert went_back == [("emptied", first.flush_id, None)]
    assert logged(caplog, "emptied", first.flush_id)
    assert counts(posts) == [1, 1]  # lost, as documented; now said
    record_impressions("v:3", ids)
    flush_pending()
    assert went_back == [("emptied", first.flush_id, None)]  # once
    assert counts(posts) == [2, 2]


def test_a_buffer_restored_from_before_a_flush_is_reported(standalone_buffer, went_back, caplog):
    posts, _, first = a_window_flushed_and_one_pending()
    # The backup: every key, as an RDB file taken now would hold them.
    backup = {key: standalone_buffer.dump(key) for key in scan_all(standalone_buffer)}
    second = flush_pending()
    assert counts(posts) == [2, 2]
    flush_redis(standalone_buffer)
    for key, value in backup.items():
        standalone_buffer.restore(key, 0, value)
    with caplog.at_level(logging.ERROR, logger="impressions.flush"):
        flush_pending()
    # v:2's pending counts came back after second applied them: counted twice, and said so.
    assert counts(posts) == [3, 3]
    assert went_back == [("restored", second.flush_id, first.flush_id)]
    assert logged(caplog, "went back", second.flush_id)
    assert standalone_buffer.get(keys.flush_mark_key()) is not None


def test_a_flush_of_another_buffer_by_the_command_says_nothing(standalone_buffer, went_back):
    """`flush_impressions --key-prefix OLD` (or `--redis-url OLD`) flushes the counts left in
    another buffer into this ledger: that buffer never saw this one's flushes, which is no loss."""
    posts, ids, _ = a_window_flushed_and_one_pending()
    flush_pending()
    with override_settings(IMPRESSIONS_KEY_PREFIX="old"):
        record_impressions("v:3", ids)
    call_command("flush_impressions", "--key-prefix", "old", verbosity=0)
    assert counts(posts) == [3, 3]
    assert went_back == []
