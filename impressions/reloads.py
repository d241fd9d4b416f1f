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
    """{viewer: {post: local monotonic time until which Redis blocks the pair}}, LRU by viewer."""

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
            posts = self._viewers.get(viewer_key)
            if posts is None or not all(posts.get(post_id, 0) > now for post_id in post_ids):
                return False
            self._viewers.move_to_end(viewer_key)
            return True

    def remember(self, viewer_key, post_ids, until):
        """Redis blocks these pairs until `until` (this clock); expired pairs of the viewer go."""
        now = self.clock()
        # Dict and set operations in C, not a Python step per post: every first view calls this.
        new = dict.fromkeys(post_ids, until)
        with self._lock:
            posts = self._viewers.pop(viewer_key, None) or {}
            self._pairs -= len(posts)
            if posts and min(posts.values()) <= now:
                posts = {post_id: ends for post_id, ends in posts.items() if ends > now}
            for post_id in new.keys() & posts.keys():
                new[post_id] = max(until, posts[post_id])
            posts.update(new)
            self._viewers[viewer_key] = posts
            self._pairs += len(posts)
            while len(self._viewers) > self.max_viewers or (
                self._pairs > self.max_pairs and len(self._viewers) > 1
            ):
                _, evicted = self._viewers.popitem(last=False)
                self._pairs -= len(evicted)

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
