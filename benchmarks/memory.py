"""Memory: Redis bytes per de-duplication entry and per pending post, over a large sample."""

from . import ours
from .harness import ContenderFailed, format_bytes, markdown_table


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


def fill(client, viewers, posts_per_viewer, distinct, post_ids):
    """Record `viewers` times `posts_per_viewer` impressions through ours; returns (entries, posts).

    distinct=False: every viewer sees the same posts (de-dup entries grow, pending does not).
    distinct=True: every impression is of a different post (both grow).
    """
    record_impressions = ours.record_impressions()
    client.flushdb()
    seen_posts = set()
    with ours.patient_redis():
        _fill(record_impressions, viewers, posts_per_viewer, distinct, post_ids, seen_posts)
    return viewers * posts_per_viewer, len(seen_posts)


def _fill(record_impressions, viewers, posts_per_viewer, distinct, post_ids, seen_posts):
    for viewer in range(viewers):
        offset = viewer * posts_per_viewer if distinct else 0
        ids = post_ids[offset : offset + posts_per_viewer]
        seen_posts.update(ids)
        result = record_impressions(f"s:bench-memory-{viewer}", ids)
        if result.lost:
            raise ContenderFailed("impressions lost while filling Redis (timeouts)")


def measure(client, viewers, per_viewer, distinct, post_ids):
    client.flushdb()
    before = used_memory(client)
    entries, posts = fill(client, viewers, per_viewer, distinct, post_ids)
    return {
        "entries": entries,
        "posts": posts,
        "info_delta": used_memory(client) - before,
        "keyspace": keyspace_bytes(client),
        "keys": client.dbsize(),
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
            "pending post (field of a shard's pending hash)",
            f"{extra_posts:,} posts",
            format_bytes(figures["pending_bytes"]),
            format_bytes(per("keyspace", distinct, extra_posts, shared)),
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
        " estimate leaves out the expiry entry). The pending figure is the difference between"
        " a fill of distinct posts and a fill of shared posts with the same de-dup entries.\n\n"
        + table
    )
    return text, figures
