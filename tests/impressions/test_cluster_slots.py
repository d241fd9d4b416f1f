"""A cluster that changes shape under the record path: a slot migrating, a slot not served."""

import threading
import time

import pytest
import redis
from django.test import override_settings

from casusult.models import Post
from impressions import keys
from impressions.exceptions import RedisUnavailable
from impressions.flush import flush_pending
from impressions.models import Flush
from impressions.recorder import get_client, pending_counts, record_impressions
from impressions.redis_client import slot_of
from impressions.scripts import evalsha
from tests.factories import make_posts
from tests.impressions.support import APP_REDIS_TIMEOUT

pytestmark = [pytest.mark.django_db, pytest.mark.cluster]


def viewers_of_one_shard(count):
    shard = keys.shard_of("u:0")
    return [f"u:{n}" for n in range(10_000) if keys.shard_of(f"u:{n}") == shard][:count]


def owner_and_other(cluster, slot):
    """(the primary serving `slot`, another one) of `cluster`, as plain clients."""
    nodes = {port: redis.Redis(port=port) for port in cluster.ports}
    for start, end, primary, *_ in nodes[cluster.ports[0]].execute_command("CLUSTER", "SLOTS"):
        if start <= slot <= end:
            owner = nodes.pop(primary[1])
            return owner, next(iter(nodes.values()))
    raise AssertionError(f"slot {slot} is not served")


def node_id(node):
    return node.execute_command("CLUSTER", "MYID").decode()


def start_migrating(slot, owner, other):
    other.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", node_id(owner))
    owner.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", node_id(other))


def stop_migrating(slot, *nodes):
    for node in nodes:
        node.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")


def port_of(node):
    return node.connection_pool.connection_kwargs["port"]


def migrate_keys(slot, owner, other, count):
    """MIGRATE up to `count` keys of `slot` from `owner` to `other`; returns how many moved."""
    moved = owner.execute_command("CLUSTER", "GETKEYSINSLOT", slot, count)
    if moved:
        owner.execute_command("MIGRATE", "127.0.0.1", port_of(other), "", 0, 5000, "KEYS", *moved)
    return len(moved)


def finish_migrating(slot, owner, other, cluster):
    """Move the slot's last keys, then give the slot to `other` (each node told, as
    redis-cli --cluster reshard does)."""
    while migrate_keys(slot, owner, other, 100):
        pass
    new_owner = node_id(other)
    for node in (other, owner, *(redis.Redis(port=port) for port in cluster.ports)):
        node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", new_owner)


def impressions_of(ids):
    return dict(Post.objects.filter(id__in=ids).values_list("id", "impressions"))


def recorded_with_a_slot_migrating(cluster):
    """Posts viewed in every shard; the slot of one shard's keys migrating from its node to
    another, some of its keys moved, some not. Returns (post ids, impressions each, start the
    end of the migration)."""
    ids = [post.id for post in make_posts(2)]
    viewers = set(viewers_of_one_shard(3) + [f"u:{n}" for n in range(40)])
    for viewer in viewers:
        record_impressions(viewer, ids)
    slot = slot_of(keys.tag(keys.shard_of("u:0")))
    owner, other = owner_and_other(cluster, slot)
    start_migrating(slot, owner, other)
    assert migrate_keys(slot, owner, other, 2) == 2
    return ids, len(viewers), lambda: finish_migrating(slot, owner, other, cluster)


def test_a_flush_rides_out_a_slot_migrating_under_its_snapshot(private_cluster_buffer):
    """A slot migrating between nodes (ElastiCache Serverless scaling) refuses the flush's
    snapshot of its shard (TRYAGAIN: some keys moved, some not) until it has moved: the flush
    waits for it, within IMPRESSIONS_FLUSH_REDIS_TIMEOUT, instead of failing whole."""
    ids, expected, finish = recorded_with_a_slot_migrating(private_cluster_buffer)
    ends = threading.Timer(1.0, finish)
    ends.start()
    try:
        started = time.monotonic()
        report = flush_pending()
        elapsed = time.monotonic() - started
    finally:
        ends.join()
    assert report.outcome == Flush.Outcome.APPLIED
    assert elapsed >= 0.9  # it waited for the migration
    assert impressions_of(ids) == {post_id: expected for post_id in ids}
    assert pending_counts(ids) == {post_id: 0 for post_id in ids}
    assert list(Flush.objects.values_list("outcome", flat=True)) == [Flush.Outcome.APPLIED]
    assert flush_pending().impressions_applied == 0  # nothing left to count twice
    assert impressions_of(ids) == {post_id: expected for post_id in ids}


@override_settings(IMPRESSIONS_FLUSH_REDIS_TIMEOUT=0.8)
def test_a_migration_that_outlasts_the_flush_s_timeout_fails_it_and_loses_nothing(
    private_cluster_buffer,
):
    ids, expected, finish = recorded_with_a_slot_migrating(private_cluster_buffer)
    try:
        started = time.monotonic()
        with pytest.raises(RedisUnavailable, match="rehashing of slot"):
            flush_pending()
        assert time.monotonic() - started < 2.5  # redis-py's retries (0.4 s), then 0.8 s
    finally:
        finish()
    report = flush_pending()  # the other shards' snapshots of the failed flush too
    assert len(report.recovered) == 1
    assert impressions_of(ids) == {post_id: expected for post_id in ids}
    assert pending_counts(ids) == {post_id: 0 for post_id in ids}


@override_settings(IMPRESSIONS_SHARDS=1)
def test_a_snapshot_whose_slot_moved_to_a_node_not_asked_for_replicas_waits(
    private_cluster_buffer,
):
    """The node it moved to serves no other shard: its replicas, not asked for before the
    snapshot, are not waited for; the snapshot stays for the next flush, which asks."""
    ids, expected, finish = recorded_with_a_slot_migrating(private_cluster_buffer)
    ends = threading.Timer(0.6, finish)
    ends.start()
    try:
        with pytest.raises(RedisUnavailable, match="did not ask for"):
            flush_pending()
    finally:
        ends.join()
    assert impressions_of(ids) == {post_id: 0 for post_id in ids}
    assert len(flush_pending().recovered) == 1
    assert impressions_of(ids) == {post_id: expected for post_id in ids}


@override_settings(IMPRESSIONS_REDIS_TIMEOUT=APP_REDIS_TIMEOUT)
def test_a_call_a_migrating_slot_refuses_gives_up_within_the_timeout(private_cluster_buffer):
    known, new = viewers_of_one_shard(2)
    assert record_impressions(known, [1]).counted == 1  # the shard's hashes exist on the owner
    slot = slot_of(keys.tag(keys.shard_of(known)))
    owner, other = owner_and_other(private_cluster_buffer, slot)
    start_migrating(slot, owner, other)
    try:
        # The new viewer's keys are missing on the owner: TRYAGAIN until the migration ends.
        started = time.monotonic()
        result = record_impressions(new, [1, 2])
        elapsed = time.monotonic() - started
    finally:
        stop_migrating(slot, owner, other)
    assert result.lost == 2
    # 50 ms (IMPRESSIONS_REDIS_TIMEOUT); the cluster client's retries took 450 ms.
    assert elapsed < 0.25
    assert record_impressions(new, [1, 2]).counted == 2
    assert pending_counts([1, 2]) == {1: 2, 2: 1}


@override_settings(IMPRESSIONS_REDIS_TIMEOUT=2.0)
def test_a_call_goes_through_once_its_slot_s_migration_ends_within_the_timeout(
    private_cluster_buffer,
):
    known, new = viewers_of_one_shard(2)
    assert record_impressions(known, [1]).counted == 1
    slot = slot_of(keys.tag(keys.shard_of(known)))
    owner, other = owner_and_other(private_cluster_buffer, slot)
    start_migrating(slot, owner, other)
    ends = threading.Timer(0.6, stop_migrating, (slot, owner, other))
    ends.start()
    try:
        result = record_impressions(new, [1, 2])
    finally:
        ends.join()
    assert (result.counted, result.lost) == (2, 0)
    assert pending_counts([1, 2]) == {1: 2, 2: 1}


def test_a_slot_no_node_serves_loses_the_call_at_once(private_cluster_buffer):
    viewer = "u:down"
    assert record_impressions(viewer, [1]).counted == 1
    slot = slot_of(keys.tag(keys.shard_of(viewer)))
    owner, _ = owner_and_other(private_cluster_buffer, slot)
    owner.execute_command("CLUSTER", "DELSLOTS", slot)  # CLUSTERDOWN Hash slot not served
    try:
        started = time.monotonic()
        result = record_impressions(viewer, [2])
        elapsed = time.monotonic() - started
    finally:
        owner.execute_command("CLUSTER", "ADDSLOTS", slot)
    assert result.lost == 1
    # The cluster client slept 250 ms on CLUSTERDOWN, then raised all the same.
    assert elapsed < 0.2
    assert record_impressions(viewer, [2]).counted == 1


def test_a_one_key_call_follows_ask_to_the_node_importing_its_slot(private_cluster_buffer):
    key = keys.new_viewers_key("digest", 1)
    arguments = ["viewer", 1, 10, 60]  # scripts.NEW_VIEWER: a cookie issued, budget 10
    assert evalsha(get_client(), "NEW_VIEWER", [key], arguments) == 1
    slot = slot_of(key)
    owner, other = owner_and_other(private_cluster_buffer, slot)
    start_migrating(slot, owner, other)
    try:
        port = other.connection_pool.connection_kwargs["port"]
        owner.execute_command("MIGRATE", "127.0.0.1", port, "", 0, 5000, "KEYS", key)
        assert evalsha(get_client(), "NEW_VIEWER", [key], arguments) == 1  # ASK, then ASKING
        on_other = other.pipeline(transaction=False)  # one connection: ASKING holds for it
        on_other.execute_command("ASKING").hget(key, "#")
        assert on_other.execute()[1] == b"2"
    finally:
        stop_migrating(slot, owner, other)


def moved_refusals(node):
    """The MOVED errors `node` has answered since it started (INFO errorstats)."""
    return node.info("errorstats").get("errorstat_MOVED", {}).get("count", 0)


def test_after_a_slot_moved_the_record_path_follows_it_once_then_goes_to_its_new_node(
    private_cluster_buffer,
):
    """A thread keeps the node and connection of each slot it records in (redis_client._route):
    once the slot has moved, its first call is refused (MOVED) and follows it; the calls after it
    go straight to the new node, none to the old one."""
    viewer, other_viewer = viewers_of_one_shard(2)
    assert record_impressions(viewer, [1]).counted == 1
    slot = slot_of(keys.tag(keys.shard_of(viewer)))
    owner, other = owner_and_other(private_cluster_buffer, slot)
    start_migrating(slot, owner, other)
    finish_migrating(slot, owner, other, private_cluster_buffer)
    refused = moved_refusals(owner)
    assert record_impressions(viewer, [2]).counted == 1
    assert record_impressions(other_viewer, [1, 2]).counted == 2
    assert record_impressions(viewer, [1, 2, 3]).counted == 1
    assert moved_refusals(owner) == refused + 1
    assert pending_counts([1, 2, 3]) == {1: 2, 2: 2, 3: 1}
