"""Memory: Redis bytes per de-duplication entry and per pending (post, day), over a large sample."""

from datetime import UTC, datetime, timedelta

from . import ours
from .harness import ContenderFailed, format_bytes, markdown_table

# Either side of a midnight (UTC, the test settings' TIME_ZONE): two days' counters of one post.
BEFORE_MIDNIGHT = datetime(2026, 11, 18, 23, 59, 59, tzinfo=UTC)
AFTER_MIDNIGHT = BEFORE_MIDNIGHT + timedelta(seconds=2)


def used_memory(client):
    return int(client.info("memory")["used_memory"])


def keyspace_bytes(client):
    """Sum of MEMORY USAGE over every key of this db (only our db: other users do not show)."""
    total = 0
    pipe = client.pipeline(transaction=False)
    for key in client.scan_iter(count=1000):
        pipe.memory_usage(key, samples=0)
    for usage in pipe.execute():
        total += usage or 0
    return total


def pending_usage(client):
    """(MEMORY USAGE of every shard's pending hash and set of days, counters in the hashes)."""
    hashes = [
        key for pattern in ("*:pending", "*:pending:*") for key in client.scan_iter(match=pattern)
    ]
    day_sets = list(client.scan_iter(match="*:pending-days", count=1000))
    pipe = client.pipeline(transaction=False)
    for key in hashes + day_sets:
        pipe.memory_usage(key, samples=0)
    for key in hashes:
        pipe.hlen(key)
    replies = pipe.execute()
    keys = len(hashes) + len(day_sets)
    return sum(usage or 0 for usage in replies[:keys]), sum(replies[keys:])


def fill(client, viewers, posts_per_viewer, distinct, post_ids, days=1):
    """Record `viewers` times `posts_per_viewer` impressions through ours; returns (entries, posts).

    distinct=False: every viewer sees the same posts (de-dup entries grow, pending does not).
    distinct=True: every impression is of a different post (both grow).
    days=2: each page is also seen by another viewer just after midnight (two counters a post).
    """
    record_impressions = ours.record_impressions()
    client.flushdb()
    seen_posts = set()
    with ours.patient_redis():
        for day in range(days):
            now = (BEFORE_MIDNIGHT, AFTER_MIDNIGHT)[day] if days > 1 else None
            _fill(
                record_impressions, viewers, posts_per_viewer, distinct, post_ids, seen_posts, now
            )
    return viewers * posts_per_viewer * days, len(seen_posts)


def _fill(record_impressions, viewers, posts_per_viewer, distinct, post_ids, seen_posts, now):
    for viewer in range(viewers):
        offset = viewer * posts_per_viewer if distinct else 0
        ids = post_ids[offset : offset + posts_per_viewer]
        seen_posts.update(ids)
        result = record_impressions(f"s:bench-memory-{viewer}-{now}", ids, now=now)
        if result.lost:
            raise ContenderFailed("impressions lost while filling Redis (timeouts)")


def measure(client, viewers, per_viewer, distinct, post_ids, days=1):
    client.flushdb()
    before = used_memory(client)
    entries, posts = fill(client, viewers, per_viewer, distinct, post_ids, days)
    pending_bytes, counters = pending_usage(client)
    return {
        "entries": entries,
        "posts": posts,
        "info_delta": used_memory(client) - before,
        "keyspace": keyspace_bytes(client),
        "keys": client.dbsize(),
        "pending_usage": pending_bytes,
        "counters": counters,
    }


def run(options, post_ids, redis_client, log=print):
    """Three fills: shared posts (de-dup only), distinct posts (both), heavy viewers (big zsets)."""
    entries = options.memory_entries
    page = 20
    heavy = 500  # a viewer who scrolled 25 pages inside the window: past the listpack limit
    if entries < heavy * 2 or entries > len(post_ids):
        raise SystemExit(f"--memory-entries must be between {heavy * 2} and {len(post_ids)}")
    log(f"memory: samples of {entries:,} impressions")
    try:
        shared = measure(redis_client, entries // page, page, False, post_ids)
        distinct = measure(redis_client, entries // page, page, True, post_ids)
        two_days = measure(redis_client, entries // page // 2, page, True, post_ids, days=2)
        heavy_fill = measure(redis_client, entries // heavy, heavy, False, post_ids)
    except ContenderFailed as error:
        return f"FAILED: {error}", {}
    finally:
        redis_client.flushdb()
    zset = redis_client.config_get("zset-max-listpack-entries").get("zset-max-listpack-entries")

    def per(field, numerator_fill, count, minus=None):
        value = numerator_fill[field] - (minus[field] if minus else 0)
        return value / count if count else float("nan")

    extra_posts = distinct["posts"] - shared["posts"]
    figures = {
        "dedup_bytes": per("info_delta", shared, shared["entries"]),
        "dedup_bytes_heavy": per("info_delta", heavy_fill, heavy_fill["entries"]),
        "pending_bytes": per("info_delta", distinct, extra_posts, shared),
        "counter_bytes": per("pending_usage", distinct, distinct["counters"]),
        "counter_bytes_two_days": per("pending_usage", two_days, two_days["counters"]),
    }
    rows = [
        [
            f"de-dup entry, viewers of one page ({page} posts, zset listpack)",
            f"{shared['entries']:,} entries",
            format_bytes(figures["dedup_bytes"]),
            format_bytes(per("keyspace", shared, shared["entries"])),
        ],
        [
            f"de-dup entry, heavy viewers ({heavy} posts each, zset skiplist > {zset})",
            f"{heavy_fill['entries']:,} entries",
            format_bytes(figures["dedup_bytes_heavy"]),
            format_bytes(per("keyspace", heavy_fill, heavy_fill["entries"])),
        ],
        [
            "pending (post, day) counter, all on one day (field `<post>:<yyyymmdd>`)",
            f"{extra_posts:,} posts",
            format_bytes(figures["pending_bytes"]),
            format_bytes(figures["counter_bytes"]),
        ],
        [
            "pending (post, day) counter, every post on two days (a midnight between views)",
            f"{two_days['counters']:,} counters",
            "-",
            format_bytes(figures["counter_bytes_two_days"]),
        ],
    ]
    table = markdown_table(
        ["what", "sample", "bytes each (INFO used_memory delta)", "bytes each (MEMORY USAGE sum)"],
        rows,
    )
    text = (
        "Filled through `record_impressions` (ours), from an empty Redis database. The INFO delta"
        " is what the server really allocated, but it is instance-wide, so other clients of a"
        " shared Redis add noise; the MEMORY USAGE sum covers only this database's keys (its"
        " estimate leaves out the expiry entry). The pending INFO figure is the difference"
        " between a fill of distinct posts and a fill of shared posts with the same de-dup"
        " entries; the pending MEMORY USAGE figures are the shards' pending hashes and sets of"
        " days divided by the counters in them.\n\n" + table
    )
    return text, figures
