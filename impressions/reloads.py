"""Reloads a process answers itself: (viewer, post) pairs it knows Redis still de-duplicates."""

import threading
import time
from collections import OrderedDict

from django.core.signals import setting_changed
from django.dispatch import receiver

# Bounds of the memory it takes: about 100 bytes a pair, so some 20 MB per process at most.
MAX_VIEWERS = 10_000
MAX_PAIRS = 200_000


def safety_margin(window):
    """Seconds taken off every block: the round trip and clock rates never make us skip a count."""
    return max(1.0, window * 0.02)


class ReloadCache:
    """{viewer: ({post: local monotonic time until which Redis blocks the pair}, the earliest of
    those times or less, pairs kept by the last pass over them, the latest of those times)}, LRU
    by viewer; a viewer whose pairs have all lapsed goes at the next call (forget_lapsed)."""

    def __init__(self, max_viewers=MAX_VIEWERS, max_pairs=MAX_PAIRS, clock=time.monotonic):
        self.max_viewers = max_viewers
        self.max_pairs = max_pairs
        self.clock = clock
        self._lock = threading.Lock()
        self._viewers = OrderedDict()
        self._pairs = 0

    def covers(self, viewer_key, post_ids):
        """True if every post is a pair still blocked: Redis would count none of them."""
        now = self.clock()
        with self._lock:
            self.forget_lapsed(now)
            held = self._viewers.get(viewer_key)
            if held is None or not all(held[0].get(post_id, 0) > now for post_id in post_ids):
                return False
            self._viewers.move_to_end(viewer_key)
            return True

    def remember(self, viewer_key, post_ids, until):
        """Redis blocks these pairs until `until` (this clock); expired pairs of the viewer go."""
        now = self.clock()
        # Dict and set operations in C, not a Python step per post: every first view calls this.
        new = dict.fromkeys(post_ids, until)
        with self._lock:
            self.forget_lapsed(now)
            posts, earliest, kept, latest = self._viewers.pop(viewer_key, None) or ({}, until, 0, 0)
            self._pairs -= len(posts)
            # Expired pairs go in one pass once the viewer's pairs have doubled since the last
            # one: a pass (or a min()) on every call cost a viewer scrolling a long timeline all
            # its pairs on every page (4 ms a page at 200,000).
            if earliest <= now and len(posts) >= 2 * kept:
                posts = {post_id: ends for post_id, ends in posts.items() if ends > now}
                earliest, kept = min(posts.values(), default=until), len(posts)
            for post_id in new.keys() & posts.keys():
                new[post_id] = max(until, posts[post_id])
            posts.update(new)
            self._viewers[viewer_key] = (posts, min(earliest, until), kept, max(latest, until))
            self._pairs += len(posts)
            # The viewer just remembered goes too when it alone holds more than max_pairs.
            while self._viewers and (
                len(self._viewers) > self.max_viewers or self._pairs > self.max_pairs
            ):
                _, (evicted, *_) = self._viewers.popitem(last=False)
                self._pairs -= len(evicted)

    def forget_lapsed(self, now):
        """Drop the least recently used viewers while all their pairs have lapsed (the lock held).

        A logged-in viewer is its user id (`u:42`): kept until 10,000 other viewers came, it and
        the posts it saw stayed for days in a quiet process. A viewer is used last when its
        pairs start or are read, so the viewers before it lapse within a window of that: each
        goes at most about two windows after its last view, if the process records at all.
        """
        while self._viewers:
            posts, _, _, latest = next(iter(self._viewers.values()))
            if latest > now:
                return
            self._viewers.popitem(last=False)
            self._pairs -= len(posts)

    def clear(self):
        with self._lock:
            self._viewers.clear()
            self._pairs = 0

    def __len__(self):
        """Pairs held (expired ones included until their viewer is touched or evicted)."""
        return self._pairs

    def viewers(self):
        return len(self._viewers)


reloads = ReloadCache()


@receiver(setting_changed, dispatch_uid="impressions-clear-reloads")
def _on_setting_changed(setting, **_):
    # Another Redis or another window: what this process knew no longer holds.
    if setting.startswith("IMPRESSIONS_"):
        reloads.clear()
