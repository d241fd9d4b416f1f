"""A window's pending counts written fast, the way the record path writes them: the RECORD script
itself in calls of PAGE posts, pipelined, with the de-duplication window at 0 (its entries belong
to viewers, and the flush never reads them). verify() fills a sample both ways, through this and
through record_impressions, and compares every key the flush reads."""

from django.test import override_settings

from . import ours
from .harness import ContenderFailed

PAGE = 5_000  # posts per RECORD call (the script works through them 500 at a time)
PIPELINE = 20  # calls per round trip
VIEWER_PREFIX = "s:bulk"
VERIFY_PAGE = 500


def record_calls(pending, day, cluster=False, page=PAGE):
    """[(viewer, post ids, keys, args)] that count `pending` ({post id: count}) on `day`: a post
    with count n is in n calls, each of another viewer (so a reload never hides one)."""
    from impressions import keys, recorder

    out = []
    with override_settings(IMPRESSIONS_DEDUP_WINDOW=0):
        for level in range(1, max(pending.values(), default=0) + 1):
            ids = [post_id for post_id, count in pending.items() if count >= level]
            for start in range(0, len(ids), page):
                viewer = f"{VIEWER_PREFIX}-{level}-{start}"
                chunk = ids[start : start + page]
                script_keys, args = recorder.record_call(
                    keys.shard_of(viewer), viewer, chunk, "", day, guard=not cluster
                )
                out.append((viewer, chunk, script_keys, args))
    return out


def fill(client, pending, day, page=PAGE):
    """Count `pending` in Redis (standalone `client`); returns the impressions counted."""
    from impressions import scripts

    sha = client.script_load(scripts.RECORD)
    calls = record_calls(pending, day, page=page)
    counted = 0
    for start in range(0, len(calls), PIPELINE):
        batch = calls[start : start + PIPELINE]
        pipe = client.pipeline(transaction=False)
        for _viewer, _chunk, script_keys, args in batch:
            pipe.evalsha(sha, len(script_keys), *script_keys, *args)
        for (_viewer, chunk, _keys, _args), reply in zip(batch, pipe.execute(), strict=True):
            if reply[0] != len(chunk):
                raise ContenderFailed(f"the fill counted {reply[0]} of {len(chunk)} posts")
            counted += reply[0]
    return counted


def buffer_state(client):
    """{key: value} of every key but the viewers' de-duplication sets, TTLs as 'has one'; the
    schedule guard's value, and the scheduled window's, is the time it was taken, so only its
    being there counts."""
    from impressions import keys

    taken_at = {keys.guard_key(), keys.scheduled_window_key()}
    state = {}
    for key in client.scan_iter(count=1000):
        name = key.decode()
        if ":seen:" in name:
            continue
        kind = client.type(key).decode()
        if name in taken_at:
            value = "taken"
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "set":
            value = client.smembers(key)
        elif kind == "string":
            value = client.get(key)
        else:
            value = kind  # nothing else is expected: shown by type
        state[name] = (value, client.ttl(key) > 0)
    return state


def verify(client, pending, day):
    """Fill `pending` this way and through record_impressions (the request path, one call per
    page, the real window) into an emptied db: the same buffer, or ContenderFailed."""
    from impressions.recorder import today

    if day != today.text():
        raise ContenderFailed("verify() compares with record_impressions, which records today")
    client.flushdb()
    # Small calls: the sample's viewers spread over every shard.
    fill(client, pending, day, page=VERIFY_PAGE)
    bulk = buffer_state(client)
    client.flushdb()
    record_impressions = ours.record_impressions()
    with ours.patient_redis():
        for viewer, chunk, _keys, _args in record_calls(pending, day, page=VERIFY_PAGE):
            result = record_impressions(viewer, chunk)
            if result.counted != len(chunk):
                raise ContenderFailed(f"record_impressions counted {result.counted}/{len(chunk)}")
    recorded = buffer_state(client)
    client.flushdb()
    if bulk != recorded:
        differ = sorted(k for k in bulk.keys() | recorded.keys() if bulk.get(k) != recorded.get(k))
        raise ContenderFailed(f"the bulk fill and record_impressions differ in {differ[:5]}")
    return len(bulk)
