"""The public API on real Redis: buffer status and ping for metrics and health, pending counts."""

import pytest
import redis
from django.test import override_settings
from redis.exceptions import RedisClusterException

import impressions
from impressions import keys
from impressions.flush import flush_pending
from impressions.recorder import lost, record_impressions
from impressions.reloads import reloads
from tests.factories import make_posts

pytestmark = pytest.mark.django_db


def test_buffer_status_sums_every_shard_and_the_reported_losses(buffer):
    posts = make_posts(3)
    ids = [p.id for p in posts]
    assert impressions.buffer_status() == (0, 0, 0, 0, False, 0)
    viewers = [f"u:{n}" for n in range(40)]
    for viewer in viewers:
        record_impressions(viewer, ids)
    shards = {keys.shard_of(viewer) for viewer in viewers}
    lost.give_back(7)  # as a request that failed earlier would; the next call reports it
    reloads.clear()  # so the reload goes to Redis, as from a process that did not count it
    record_impressions("u:0", ids)  # a reload: nothing counted, the loss reported

    status = impressions.buffer_status()

    assert status.pending_impressions == 40 * 3
    assert status.pending_entries == len(shards) * 3
    assert status.reported_lost == 7
    assert status.in_snapshots == 0
    assert status.flush_scheduled  # the Dummy backend stored the flush the first record scheduled
    assert impressions.pending_counts(ids) == dict.fromkeys(ids, 40)
    flush_pending()
    # Losses stay reported after a flush; the flush cleared the schedule guard.
    assert impressions.buffer_status() == (0, 0, 7, 0, False, 0)


def test_ping_names_the_client_kind(buffer):
    assert impressions.ping(timeout=0.5) == type(buffer).__name__  # Redis or RedisCluster


def test_buffer_status_and_ping_raise_when_redis_does_not_answer(private_redis):
    private_redis.stop()
    with override_settings(IMPRESSIONS_REDIS_URL=private_redis.url):
        with pytest.raises((redis.RedisError, RedisClusterException)):
            impressions.buffer_status(timeout=0.2)
        with pytest.raises((redis.RedisError, RedisClusterException)):
            impressions.ping(timeout=0.2)
        with pytest.raises((redis.RedisError, RedisClusterException)):
            impressions.pending_counts([1])
