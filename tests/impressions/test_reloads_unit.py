"""The reload cache alone: expiry, LRU bounds by viewer and by pairs."""

import time

from impressions.reloads import ReloadCache, safety_margin


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_pairs_are_covered_until_their_block_ends():
    clock = Clock()
    cache = ReloadCache(clock=clock)
    cache.remember("u:1", [1, 2], until=110.0)
    assert cache.covers("u:1", [1, 2])
    assert cache.covers("u:1", [2])
    assert not cache.covers("u:1", [1, 3])  # a new post: Redis must count it
    assert not cache.covers("u:2", [1])
    clock.now = 110.0
    assert not cache.covers("u:1", [1])


def test_the_least_recently_used_viewers_go_first():
    cache = ReloadCache(max_viewers=3, clock=Clock())
    for viewer in ("a", "b", "c"):
        cache.remember(viewer, [1], until=200.0)
    assert cache.covers("a", [1])  # a is now the most recent
    cache.remember("d", [1], until=200.0)
    assert cache.viewers() == 3
    assert not cache.covers("b", [1])
    assert all(cache.covers(viewer, [1]) for viewer in ("a", "c", "d"))


def test_the_pairs_held_are_bounded():
    cache = ReloadCache(max_pairs=10, clock=Clock())
    for viewer in range(5):
        cache.remember(f"u:{viewer}", range(4), until=200.0)
    assert len(cache) <= 10
    assert cache.covers("u:4", range(4))
    assert not cache.covers("u:0", [0])


def test_expired_pairs_of_a_viewer_go_when_it_is_remembered_again():
    clock = Clock()
    cache = ReloadCache(clock=clock)
    cache.remember("u:1", [1, 2], until=105.0)
    clock.now = 106.0
    cache.remember("u:1", [3], until=200.0)
    assert len(cache) == 1


def test_the_safety_margin_is_a_second_or_two_percent_of_the_window():
    assert safety_margin(10) == 1.0
    assert safety_margin(1800) == 36.0


def test_one_viewer_alone_holds_no_more_than_the_pairs_bound():
    cache = ReloadCache(max_pairs=100, clock=Clock())
    for page in range(10):  # a viewer scrolling: 20 new posts a page
        cache.remember("u:scroller", range(page * 20, page * 20 + 20), until=200.0)
    assert len(cache) <= 100
    cache.remember("u:reader", range(20), until=200.0)
    assert cache.covers("u:reader", range(20))


def test_a_page_costs_the_same_however_many_pairs_its_viewer_holds():
    """Each page once took a pass over all the viewer's pairs (a min()): 4 ms a page at 200,000
    pairs, the process's other threads waiting on the GIL."""
    clock = Clock()
    cache = ReloadCache(max_pairs=10**6, clock=clock)
    cache.remember("u:scroller", range(100_000), until=400.0)
    started = time.perf_counter()
    for page in range(500):
        clock.now += 0.5  # every pair outlives the scroll: no pass has anything to drop
        cache.remember("u:scroller", range(10**6 + page * 20, 10**6 + page * 20 + 20), until=400.0)
    assert time.perf_counter() - started < 0.5  # 500 passes over 100,000 pairs: 3 s
    assert cache.covers("u:scroller", [5, 10**6 + 9_999])


def test_a_viewer_whose_pairs_all_lapsed_is_forgotten_by_the_next_call():
    # A logged-in viewer's key is its user id (`u:42`), with the posts it saw: held until 10,000
    # other viewers came, for days on a quiet process, after the user's account was deleted.
    clock = Clock()
    cache = ReloadCache(clock=clock)
    cache.remember("u:7", [1], until=350.0)
    cache.remember("u:42", [1, 2], until=400.0)
    clock.now = 350.0
    cache.remember("u:8", [1], until=650.0)
    assert (cache.viewers(), len(cache)) == (2, 3)  # u:7 gone, u:42 still blocks its posts
    clock.now = 400.0
    assert not cache.covers("u:9", [1])
    assert (cache.viewers(), len(cache)) == (1, 1)  # only u:8
    assert cache.covers("u:8", [1])
