"""The load test's arithmetic: from who was served which posts, the counts the database must show."""

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass


@dataclass
class Served:
    """One timeline response: who saw which posts, and when it was in flight (monotonic s)."""

    viewer: str
    post_ids: list
    sent: float
    received: float


@dataclass
class Outage:
    """When Redis was being stopped, was stopped, and was being started again (monotonic s)."""

    stop_requested: float = None
    stopped: float = None
    start_requested: float = None
    started: float = None

    def classify(self, sent, received):
        """ "up" (wholly outside the outage), "down" (wholly inside) or "edge" (overlapping)."""
        if self.stop_requested is None:
            return "up"
        if received < self.stop_requested or sent > self.started:
            return "up"
        if sent > self.stopped and received < self.start_requested:
            return "down"
        return "edge"


@dataclass
class Expectation:
    lower: dict  # post id -> impressions that must have been counted
    upper: dict  # post id -> impressions that may have been counted
    pairs: Counter  # "up", "edge", "down": distinct (viewer, post) pairs by best class
    impressions: Counter  # served impressions (with repeats) by class
    fresh_after_outage: int = 0  # pairs that could only count after Redis came back
    fresh_while_down: int = 0  # impressions served while down of pairs no process can have cached


def expected_counts(served, outage=None):
    """What the database must show per post after the flush, as [lower, upper] bounds.

    The runner sets the de-duplication window longer than the run, so a (viewer, post) pair counts
    at most once: exactly once if it was served while Redis was up, at most once if only at the
    outage's edges, never if only while Redis was down.
    """
    outage = outage or Outage()
    rank = {"up": 0, "edge": 1, "down": 2}
    best = {}  # (viewer, post) -> best class it was served in
    kinds = defaultdict(set)
    first_up = {}  # (viewer, post) -> when it was first served while Redis was up
    first_sent = {}  # (viewer, post) -> when it was first asked for, whatever Redis was doing
    for item in served:
        for post_id in item.post_ids:
            pair = (item.viewer, post_id)
            first_sent[pair] = min(first_sent.get(pair, item.sent), item.sent)
    impressions = Counter()
    fresh_while_down = 0
    for item in served:
        kind = outage.classify(item.sent, item.received)
        impressions[kind] += len(item.post_ids)
        for post_id in item.post_ids:
            pair = (item.viewer, post_id)
            if pair not in best or rank[kind] < rank[best[pair]]:
                best[pair] = kind
            kinds[pair].add(kind)
            if kind == "up":
                first_up[pair] = min(first_up.get(pair, item.sent), item.sent)
            # A process skips Redis for a reload of a pair it counted (impressions/reloads.py), so
            # a reload served while down may be de-duplicated there, not dropped. Only a pair no
            # request asked for before Redis was stopped cannot be in any process's cache.
            if kind == "down" and first_sent[pair] > outage.stopped:
                fresh_while_down += 1
    lower, upper, pairs = defaultdict(int), defaultdict(int), Counter()
    for (_, post_id), kind in best.items():
        pairs[kind] += 1
        if kind == "up":
            lower[post_id] += 1
        if kind in ("up", "edge"):
            upper[post_id] += 1
    # Pairs that can only have been counted after Redis came back: never served while it was up
    # before, nor at an edge. Their lower bound of 1 proves counting resumed.
    fresh = 0
    if outage.started is not None:
        fresh = sum(
            1
            for pair, when in first_up.items()
            if when > outage.started and "edge" not in kinds[pair]
        )
    return Expectation(dict(lower), dict(upper), pairs, impressions, fresh, fresh_while_down)


def compare(expectation, actual):
    """Posts whose counted impressions fall outside [lower, upper]: {post: (lower, actual, upper)}."""
    wrong = {}
    for post_id in set(expectation.upper) | set(actual):
        low = expectation.lower.get(post_id, 0)
        high = expectation.upper.get(post_id, 0)
        got = actual.get(post_id, 0)
        if not low <= got <= high:
            wrong[post_id] = (low, got, high)
    return wrong


def latency_summary(latencies):
    if not latencies:
        return {"p50_ms": None, "p99_ms": None}
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"p50_ms": statistics.median(ordered) * 1000, "p99_ms": p99 * 1000}
