"""Recording: exact de-duplicated counts, one round trip, on standalone Redis and the Cluster."""

import random
import threading
import time

import pytest
import redis
from django.conf import settings
from django.test import override_settings
from django.utils import timezone
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import Connection

import devservices
from casusult.models import Post
from impressions import keys, periods, recorder, redis_client, scripts
from impressions.flush import flush_pending, new_flush_id, take_snapshots
from impressions.recorder import get_client, pending_counts, record_impressions
from tests.factories import make_posts, make_user

from .support import group_of, scan_all, viewer_in, with_option

pytestmark = pytest.mark.django_db

# (time, viewer, posts served); the window is 300 s.
SCRIPT = [
    (0, "u:1", [1, 2, 3]),  # first view: 3
    (10, "u:1", [1, 2, 3]),  # reload inside the window: nothing
    (10, "u:2", [1, 2]),  # another viewer: 2
    (100, "s:anon-a", [1]),  # an anonymous viewer: 1
    (299, "u:1", [1, 4]),  # post 4 is new to u:1, post 1 is still inside the window
    (300, "u:1", [1, 2, 3]),  # exactly one window after the first count: all count again
    (301, "u:1", [4]),  # counted at 299: nothing
    (600, "u:2", [1, 2, 1]),  # the same post twice on one page counts once
    (601, "s:anon-a", [1, 5]),  # anonymous again after the window, plus a new post
]
EXPECTED = {1: 6, 2: 4, 3: 2, 4: 1, 5: 1}


def index_posts(count):
    """Real posts; returns {script number: post id}."""
    return {number: post.id for number, post in enumerate(make_posts(count), start=1)}


def test_scripted_views_count_exactly_then_flush_exactly(buffer):
    count_and_flush_the_script()


def count_and_flush_the_script():
    """Record SCRIPT's views through the public API, flush them: exact counts in Redis, then in
    the database, and nothing left pending."""
    ids = index_posts(5)
    for now, viewer, posts in SCRIPT:
        record_impressions(viewer, [ids[p] for p in posts], now=now)
    assert pending_counts(ids.values()) == {ids[p]: n for p, n in EXPECTED.items()}

    report = flush_pending()

    assert report.impressions_applied == sum(EXPECTED.values())
    stored = dict(Post.objects.values_list("id", "impressions"))
    assert {p: stored[ids[p]] for p in EXPECTED} == EXPECTED
    assert pending_counts(ids.values()) == dict.fromkeys(ids.values(), 0)


def test_a_count_goes_to_its_post_s_group_in_a_hash_table(buffer):
    posts = [120, 7, 4093, 58_011, 11_999, 3_000_007]
    record_impressions("u:groups", posts)
    shard = keys.shard_of("u:groups")
    day = keys.day_text(periods.day_of(timezone.now()))
    for post in posts:
        key = keys.pending_group_keys(shard)[group_of(str(post))]
        assert buffer.hget(key, f"{post}:{day}") == b"1"
        # Made a hash table at once: a small-hash encoding would scan every field a count.
        assert buffer.object("encoding", key) == b"hashtable"
        assert buffer.hlen(key) == len([p for p in posts if p // 1000 % 10 == post // 1000 % 10])
    assert not buffer.exists(keys.pending_key(shard))
    assert pending_counts(posts) == dict.fromkeys(posts, 1)


def test_pending_counts_read_each_post_s_group_and_the_ungrouped_hashes(buffer):
    """An id's counts sum over its group's hash and the ungrouped one (a version before the
    groups, fields with and without a day), pending and in each snapshot: each count below is in
    one hash only, so a hash that pending_counts does not read for it is a count missed."""
    posts = [7, 1_005, 4_093, 58_011, 11_999, 3_000_007, -3, 2**53 + 1]
    shard, old, day = 2, "20261201T000000-01d01d02", keys.day_text(periods.day_of(timezone.now()))
    record_impressions(viewer_in(shard), posts)  # 1 each, in their groups' hashes
    take_snapshots(get_client(), new_flush_id(), [shard])  # now in the snapshot's group hashes
    record_impressions(viewer_in(shard, taken={viewer_in(shard)}), posts[:4])  # pending again
    buffer.hset(keys.pending_key(shard), mapping={f"{posts[1]}:{day}": 10, posts[2]: 20})
    buffer.hset(keys.snapshot_key(shard, old), mapping={f"{posts[4]}:{day}": 100, posts[5]: 200})
    buffer.sadd(keys.snapshot_days_key(shard, old), day)
    buffer.sadd(keys.snapshots_key(shard), old)

    assert pending_counts(posts) == {
        **dict.fromkeys(posts, 1),
        **dict.fromkeys(posts[:4], 2),
        posts[1]: 12,
        posts[2]: 22,
        posts[4]: 101,
        posts[5]: 201,
    }


def test_random_mix_matches_a_reference_model(buffer):
    """Many viewers over every shard, reloads in and out of the window, against a simple model."""
    rng = random.Random(20251128)
    ids = list(index_posts(40).values())
    viewers = [f"u:{n}" for n in range(60)] + [f"s:session{n}" for n in range(40)]
    last_counted, expected, now = {}, dict.fromkeys(ids, 0), 0.0
    calls = []
    for _ in range(1500):
        now += rng.choice([0, 0.5, 3, 40, 150])
        viewer = rng.choice(viewers)
        page = rng.sample(ids, rng.randint(1, 8))
        calls.append((viewer, page, now))
    # What is counted, not how fast: a loaded machine's stall past the 50 ms budget is no fault.
    with override_settings(IMPRESSIONS_REDIS_TIMEOUT=5.0):
        for viewer, page, at in calls:
            assert record_impressions(viewer, page, now=at).lost == 0
    for viewer, page, now in calls:
        for post in set(page):
            if now - last_counted.get((viewer, post), -1e9) >= 300:
                last_counted[viewer, post] = now
                expected[post] += 1
    assert pending_counts(ids) == expected
    flush_pending()
    assert dict(Post.objects.values_list("id", "impressions")) == expected
    assert sum(expected.values()) > 1000  # the mix really exercised counting


def test_every_dedup_key_expires(buffer):
    for viewer in range(50):
        record_impressions(f"u:{viewer}", [1, 2, 3])
    client = get_client()
    seen = [key for shard in range(16) for key in scan_all(client, f"{keys.tag(shard)}:seen:*")]
    assert len(seen) == 50
    assert all(0 < client.ttl(key) <= 300 for key in seen)


def test_one_round_trip_per_request_even_when_it_schedules_the_flush(
    standalone_buffer, monkeypatch
):
    record_impressions("u:warm-up", [1])  # loads the script once per server
    standalone_buffer.delete(keys.guard_key(), *(keys.armed_key(s) for s in range(16)))
    sent = []
    original = Connection.send_packed_command

    def counting(self, command, check_health=True):
        sent.append(command)
        return original(self, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", counting)
    result = record_impressions("u:42", list(range(1, 21)))
    assert result.counted == 20
    assert result.scheduled
    assert len(sent) == 1


def test_a_viewer_stays_in_one_slot_and_viewers_spread_over_nodes(cluster_buffer):
    client = cluster_buffer
    nodes = set()
    for viewer in range(40):
        shard = keys.shard_of(f"u:{viewer}")
        slot = client.keyslot(keys.seen_key(shard, f"u:{viewer}"))
        assert slot == client.keyslot(keys.pending_key(shard))
        nodes.add(client.get_node_from_key(keys.pending_key(shard)).name)
    assert len(nodes) == 3


# The views: the HTML timeline and the JSON API record exactly the posts they serve.


def served_ids(response):
    return [item["id"] for item in response.json()["results"]]


def test_api_counts_served_posts_once_per_anonymous_visitor(client, standalone_buffer):
    make_posts(25)
    first = client.get("/api/timeline/")
    assert first.status_code == 200
    page_one = served_ids(first)
    client.get("/api/timeline/")  # reload inside the window
    assert set(pending_counts(page_one).values()) == {1}
    other = Post.objects.exclude(id__in=page_one).values_list("id", flat=True)
    assert set(pending_counts(other).values()) == {0}  # page 2 was never served


def test_html_timeline_counts_and_a_logged_in_user_is_another_viewer(client, standalone_buffer):
    posts = make_posts(3)
    ids = [p.id for p in posts]
    client.get("/")
    make_user("bob")
    client.login(username="bob", password="pw-for-tests")
    client.get("/")
    client.get("/")
    assert pending_counts(ids) == dict.fromkeys(ids, 2)


@override_settings(IMPRESSIONS_COUNT_ANONYMOUS=False)
def test_anonymous_counting_can_be_turned_off(client, standalone_buffer):
    ids = [p.id for p in make_posts(3)]
    assert client.get("/api/timeline/").status_code == 200
    assert pending_counts(ids) == dict.fromkeys(ids, 0)
    assert "sessionid" not in client.cookies


@override_settings(IMPRESSIONS_DEDUP_WINDOW=1)
def test_a_reload_after_the_window_counts_again(client, standalone_buffer):
    ids = [p.id for p in make_posts(2)]
    client.get("/api/timeline/")
    client.get("/api/timeline/")
    time.sleep(1.05)
    client.get("/api/timeline/")
    assert pending_counts(ids) == dict.fromkeys(ids, 2)


def test_cluster_mode_is_detected_or_forced(redis_cluster_url, standalone_buffer):
    assert type(get_client()) is redis.Redis  # auto, on the standalone server
    with override_settings(
        IMPRESSIONS_REDIS_URL=redis_cluster_url, IMPRESSIONS_REDIS_CLUSTER="auto"
    ):
        assert isinstance(get_client(), RedisCluster)
    with override_settings(
        IMPRESSIONS_REDIS_URL=redis_cluster_url, IMPRESSIONS_REDIS_CLUSTER="true"
    ):
        client = get_client()
        assert isinstance(client, RedisCluster)
        assert record_impressions("u:forced", [1, 2]).counted == 2
        client.flushdb(target_nodes=RedisCluster.PRIMARIES)
    # The URL's own ?cluster= says the mode, and is not passed on to redis-py's connections.
    with override_settings(IMPRESSIONS_REDIS_URL=f"{redis_cluster_url}?cluster=true"):
        assert record_impressions("u:flagged", [1]).counted == 1
        get_client().flushdb(target_nodes=RedisCluster.PRIMARIES)
    with override_settings(
        IMPRESSIONS_REDIS_URL=with_option(settings.IMPRESSIONS_REDIS_URL, "cluster=false")
    ):
        assert type(get_client()) is redis.Redis
        assert record_impressions("u:flagged", [1]).counted == 1


def test_a_part_that_fails_loses_its_posts_and_the_later_parts_not_the_earlier(
    standalone_buffer, monkeypatch
):
    parts = []

    def evalsha(client, name, script_keys, args):
        parts.append(args)
        if len(parts) == 2:
            raise redis.ConnectionError("the connection dropped")
        return scripts.evalsha(client, name, script_keys, args)

    monkeypatch.setattr(recorder, "evalsha", evalsha)
    monkeypatch.setattr(recorder, "CALL_POSTS", 100)
    ids = list(range(1, 251))
    assert record_impressions("u:scroller", ids)[:2] == (100, 150)
    assert recorder.lost.impressions == 150
    assert set(pending_counts(ids[:100]).values()) == {1}
    assert set(pending_counts(ids[100:]).values()) == {0}


def test_an_id_no_bigint_holds_is_refused_before_redis_is_asked(buffer):
    """The flush could never apply it: it set the counter aside, as one "the record script did
    not write", at every flush."""
    for post_id in (2**63, -(2**63) - 1):
        with pytest.raises(ValueError, match=str(post_id)):
            record_impressions("u:1", [1, post_id])
    assert scan_all(buffer, "*") == []
    assert record_impressions("u:1", [2**63 - 1, -(2**63)]).counted == 2


def test_a_page_larger_than_a_script_chunk_counts_each_post_once(buffer):
    ids = list(range(1, 1201))
    assert record_impressions("u:big", [*ids, 1, 600, 1200]).counted == 1200
    assert record_impressions("u:big", ids[:700]).counted == 0
    # Reading 1,200 posts' counts may take longer than the 50 ms of a request on a busy machine.
    with override_settings(IMPRESSIONS_REDIS_TIMEOUT=10.0):
        assert set(pending_counts(ids).values()) == {1}


def test_a_huge_page_goes_to_redis_in_parts_that_each_hold_it_briefly(buffer, monkeypatch):
    """One call of 10,000 posts held Redis 40 ms, every other client waiting, and took the
    caller longer than its 50 ms timeout: the page was lost. Now CALL_POSTS at most a call."""
    posts_per_call = []

    def evalsha(client, name, script_keys, args):
        posts_per_call.append(len(args) - 7)  # record_call: 7 arguments, then the posts
        return scripts.evalsha(client, name, script_keys, args)

    monkeypatch.setattr(recorder, "evalsha", evalsha)
    monkeypatch.setattr(recorder, "CALL_POSTS", 100)  # parts of 100: the same, in less time
    ids = list(range(1, 251))
    result = record_impressions("u:scroller", [*ids, 7])  # 7 again, in another part
    assert (result.counted, result.lost, result.scheduled) == (250, 0, True)
    assert posts_per_call == [100, 100, 51]
    assert record_impressions("u:scroller", ids[::-1], now=time.time()).counted == 0
    assert set(pending_counts(ids).values()) == {1}


# The request path's own connections (redis_client.run_script): what redis-py's pool and the
# cluster client would have handled, handled the same.


def test_a_connection_the_server_closed_is_replaced_before_the_call(standalone_buffer):
    assert record_impressions("u:1", [1]).counted == 1  # this thread now holds a connection
    db = str(standalone_buffer.connection_pool.connection_kwargs.get("db", 0))
    held = [c for c in standalone_buffer.client_list() if c["cmd"] == "evalsha" and c["db"] == db]
    assert held
    for connection in held:
        standalone_buffer.client_kill_filter(_id=connection["id"])
    assert record_impressions("u:2", [1]).counted == 1  # not lost: a fresh connection took it
    assert pending_counts([1]) == {1: 2}


def test_a_thread_that_ends_hands_its_connection_back_to_the_pool(buffer):
    """ASGI runs each request's sync work in a thread of its own, and runserver each connection:
    with the pool lowered to 3 connections, 12 such requests in turn all count (their held
    connections once filled the pool, 100 by default, and every later call was lost)."""
    results = []
    with override_settings(
        IMPRESSIONS_REDIS_URL=with_option(settings.IMPRESSIONS_REDIS_URL, "max_connections=3")
    ):
        for number in range(12):
            thread = threading.Thread(
                target=lambda n=number: results.append(record_impressions(f"u:{n}", [1, 2]))
            )
            thread.start()
            thread.join()
        assert [result.lost for result in results] == [0] * 12
        assert pending_counts([1, 2]) == {1: 12, 2: 12}


def test_a_connection_handed_back_early_is_not_handed_back_again_when_its_thread_ends(
    standalone_buffer,
):
    """An ASGI request's thread hands its connection back when it has recorded; when it ended,
    it handed it back a second time, taking it from the thread that had it since: two threads
    would then read each other's replies."""
    recorded = threading.Event()
    may_end = threading.Event()

    def request_thread():
        record_impressions("u:asgi", [1])
        redis_client.release_thread_connections()
        recorded.set()
        may_end.wait(5)

    thread = threading.Thread(target=request_thread)
    thread.start()
    recorded.wait(5)
    record_impressions("u:kept", [1])  # this thread takes the connection handed back
    kept = redis_client._threads.connections.by_client[get_client()]
    may_end.set()
    thread.join()
    assert kept in get_client().connection_pool._in_use_connections
    assert record_impressions("u:other", [1]).counted == 1
    assert pending_counts([1]) == {1: 3}


def test_a_script_the_server_forgot_is_loaded_again(buffer):
    assert record_impressions("u:1", [1]).counted == 1
    buffer.script_flush()  # a restarted or new server: NOSCRIPT
    assert record_impressions("u:2", [1]).counted == 1
    assert pending_counts([1]) == {1: 2}


def test_a_call_sent_to_the_wrong_node_follows_moved_and_counts_once(cluster_buffer, monkeypatch):
    assert record_impressions("u:warm-up", [1]).counted == 1
    client = get_client()
    key = keys.pending_key(keys.shard_of("u:moved"))
    right = client.get_node_from_key(key)
    wrong = next(node for node in client.get_primaries() if node.name != right.name)
    monkeypatch.setattr(redis_client, "node_of", lambda cluster, key: wrong)
    assert record_impressions("u:moved", [7, 8]).counted == 2  # MOVED: the cluster client's way
    assert record_impressions("u:moved", [7, 8]).counted == 0  # de-duplicated on the right node
    monkeypatch.undo()
    assert pending_counts([7, 8]) == {7: 1, 8: 1}


def test_after_a_node_fails_a_call_the_next_one_goes_the_cluster_client_s_way(
    cluster_buffer, monkeypatch
):
    assert record_impressions("u:warm-up", [1]).counted == 1
    gone = ClusterNode("127.0.0.1", devservices.free_port())  # nothing listens there
    monkeypatch.setattr(redis_client, "node_of", lambda cluster, key: gone)
    assert record_impressions("u:1", [5]).lost == 1
    # The cluster client routes this one by its own map of the slots, which is right.
    assert record_impressions("u:1", [5]).counted == 1
    monkeypatch.undo()
    assert pending_counts([5]) == {5: 1}
