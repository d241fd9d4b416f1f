"""Reloads a process answers itself: no Redis call, the same exact counts, on real Redis."""

import threading
import time

import pytest
from django.test import override_settings

from impressions import recorder
from impressions.recorder import pending_counts, record_impressions
from impressions.reloads import reloads
from impressions.signals import impressions_recorded
from tests.factories import make_posts

from .support import result_in_a_child

pytestmark = pytest.mark.django_db


@pytest.fixture
def script_calls(monkeypatch):
    """A function giving the record-script calls this process has sent to Redis so far.

    Counted where the recorder sends them (recorder.evalsha), not in Redis's server-wide
    commandstats, which count every other client of a shared Redis too (another test run's).
    """
    sent = []
    send = recorder.evalsha

    def counted(client, name, *args, **kwargs):
        sent.append(name)
        return send(client, name, *args, **kwargs)

    monkeypatch.setattr(recorder, "evalsha", counted)
    return lambda: sent.count("RECORD")


def test_a_reload_inside_the_window_makes_no_redis_call(standalone_buffer, script_calls):
    ids = [post.id for post in make_posts(3)]
    assert record_impressions("u:1", ids).counted == 3
    sent = []

    def on_recorded(served, counted, lost, **_):
        sent.append((served, counted, lost))

    impressions_recorded.connect(on_recorded)
    try:
        before = script_calls()
        results = [record_impressions("u:1", ids) for _ in range(5)]
        results.append(record_impressions("u:1", ids[:2]))  # a page of fewer posts, all known
        assert script_calls() == before
    finally:
        impressions_recorded.disconnect(on_recorded)
    assert {result.counted for result in results} == {0}
    assert sent == [(3, 0, 0)] * 5 + [(2, 0, 0)]  # /metrics counts them as de-duplicated
    assert pending_counts(ids) == dict.fromkeys(ids, 1)


@override_settings(IMPRESSIONS_DEDUP_WINDOW=2)
def test_a_reload_after_the_window_counts_again(standalone_buffer, script_calls):
    ids = [post.id for post in make_posts(2)]
    assert record_impressions("u:1", ids).counted == 2
    before = script_calls()
    assert record_impressions("u:1", ids).counted == 0  # cached for the window less 1 s
    assert script_calls() == before
    time.sleep(2.05)
    assert record_impressions("u:1", ids).counted == 2
    assert script_calls() == before + 1
    assert pending_counts(ids) == dict.fromkeys(ids, 2)


def test_a_partly_new_page_goes_to_redis_and_counts_only_the_new_posts(
    standalone_buffer, script_calls
):
    ids = [post.id for post in make_posts(4)]
    record_impressions("u:1", ids[:3])
    before = script_calls()
    assert record_impressions("u:1", ids[1:]).counted == 1
    assert script_calls() == before + 1
    assert pending_counts(ids) == dict.fromkeys(ids, 1)
    # Redis said how long every post stays blocked: the page is a cached reload from now on.
    assert record_impressions("u:1", ids).counted == 0
    assert script_calls() == before + 1


def test_a_pair_another_process_counted_is_cached_from_redis_s_answer(
    standalone_buffer, script_calls
):
    ids = [post.id for post in make_posts(2)]

    # Another process counts the page; its cache is its own, so this one still asks Redis once.
    def count_twice():
        return [record_impressions("u:1", ids).counted for _ in range(2)]

    assert result_in_a_child(count_twice) == [2, 0]
    assert len(reloads) == 0
    before = script_calls()
    assert record_impressions("u:1", ids).counted == 0
    assert record_impressions("u:1", ids).counted == 0
    assert script_calls() == before + 1
    assert pending_counts(ids) == dict.fromkeys(ids, 1)


@override_settings(IMPRESSIONS_DEDUP_WINDOW=0)
def test_window_zero_never_caches(standalone_buffer, script_calls):
    ids = [post.id for post in make_posts(2)]
    before = script_calls()
    for _ in range(3):
        assert record_impressions("u:1", ids).counted == 2
    assert script_calls() == before + 3
    assert len(reloads) == 0
    assert pending_counts(ids) == dict.fromkeys(ids, 3)


def test_views_with_an_explicit_time_never_use_the_cache(standalone_buffer):
    ids = [post.id for post in make_posts(1)]
    record_impressions("u:1", ids, now=1000)
    assert len(reloads) == 0
    assert record_impressions("u:1", ids, now=1300).counted == 1  # one window later (300 s)


def test_a_settings_change_clears_the_cache(standalone_buffer):
    ids = [post.id for post in make_posts(1)]
    record_impressions("u:1", ids)
    assert len(reloads) == 1
    with override_settings(IMPRESSIONS_DEDUP_WINDOW=600):
        assert len(reloads) == 0


def test_threads_reloading_keep_the_counts_exact(standalone_buffer):
    ids = [post.id for post in make_posts(5)]
    pages = [ids[:3], ids[1:4], ids[2:], ids]
    viewers = [f"u:{n}" for n in range(20)]
    counted = []

    def browse(viewer):
        counted.append(sum(record_impressions(viewer, page).counted for page in pages * 5))

    threads = [threading.Thread(target=browse, args=(viewer,)) for viewer in viewers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counted == [5] * len(viewers)
    assert pending_counts(ids) == dict.fromkeys(ids, len(viewers))
