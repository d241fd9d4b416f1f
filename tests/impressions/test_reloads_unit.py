"""The reload cache alone: expiry, LRU bounds by viewer and by pairs."""

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
