"""The whole mission through each queue backend: timeline requests -> runworker --burst -> counts.

RQ: the impression buffer and the queue on the standalone Redis. SQS: the queue on moto over HTTP
(with a dead-letter redrive policy), the impression buffer on the real 3-node Redis Cluster.
"""

import time
import uuid
from collections import Counter

import boto3
import pytest
import redis
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone
from redis.cluster import RedisCluster

from casusult.models import Post
from tests.factories import make_posts, make_user
from tests.queues.rq.support import rq_settings
from tests.queues.sqs.support import SQS_BACKEND, create_queue_with_dlq, message_count

pytestmark = pytest.mark.django_db(transaction=True)
FLUSH_DELAY = 1


def empty_buffer(url):
    """Empty the impressions' Redis (every primary when it is a cluster)."""
    client = redis.Redis.from_url(url)
    if client.info("cluster").get("cluster_enabled"):
        cluster = RedisCluster.from_url(url)
        cluster.flushdb(target_nodes=RedisCluster.PRIMARIES)
        cluster.close()
    else:
        client.flushdb()


def database_url():
    """The test database pytest-django created, for the worker subprocess."""
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def browse_timelines():
    """Timeline requests by several viewers; returns the exact counts they should produce."""
    posts = make_posts(25)
    users = [make_user(f"viewer{n}") for n in range(3)]
    seen = set()  # (viewer, post id): a reload inside the de-dup window counts once

    def fetch(client, viewer, path):
        response = client.get(path)
        assert response.status_code == 200
        if "/api/" in path:
            ids = [item["id"] for item in response.json()["results"]]
            seen.update((viewer, post_id) for post_id in ids)
            return response.json()["next"]
        return None

    alice, bob = Client(), Client()
    alice.force_login(users[0])
    bob.force_login(users[1])
    page_two = fetch(alice, "alice", "/api/timeline/")
    fetch(alice, "alice", page_two)
    fetch(alice, "alice", "/api/timeline/")  # a reload
    fetch(bob, "bob", "/api/timeline/")
    carol = Client()
    carol.force_login(users[2])
    carol.get("/")  # the HTML page; the API reload below shows the same posts, counted once
    fetch(carol, "carol", "/api/timeline/")
    fetch(Client(), "anonymous", page_two)

    expected = Counter(post_id for _, post_id in seen)
    assert len(expected) == len(posts)
    return {post.id: expected[post.id] for post in posts}


def stored_counts(ids):
    return dict(Post.objects.filter(id__in=ids).values_list("id", "impressions"))


def wait_for_flush_delay():
    time.sleep(FLUSH_DELAY + 0.5)


def test_rq_on_standalone_redis(settings, manage):
    rq_url = settings.RQ_REDIS_URL
    redis.Redis.from_url(rq_url).flushdb()
    empty_buffer(settings.IMPRESSIONS_REDIS_URL)
    with override_settings(**rq_settings(rq_url), IMPRESSIONS_FLUSH_DELAY=FLUSH_DELAY):
        expected = browse_timelines()
    assert set(stored_counts(expected).values()) == {0}
    scheduled = redis.Redis.from_url(rq_url).zcard("rq:scheduled:default")
    assert scheduled == 1  # one delayed flush for all those requests

    wait_for_flush_delay()
    env = {
        "QUEUE_BACKEND": "rq",
        "RQ_REDIS_URL": rq_url,
        "REDIS_URL": settings.IMPRESSIONS_REDIS_URL,
        "DATABASE_URL": database_url(),
        "IMPRESSIONS_FLUSH_DELAY": str(FLUSH_DELAY),
    }
    burst_flushes(manage, env, expected)

    again = manage("runworker", "--burst", env=env)  # nothing left: counted exactly once
    assert again.returncode == 0, again.stderr
    assert stored_counts(expected) == expected
    redis.Redis.from_url(rq_url).flushdb()
    empty_buffer(settings.IMPRESSIONS_REDIS_URL)


def burst_flushes(manage, env, expected):
    """`runworker --burst` runs the scheduled flush, which stores exactly `expected`."""
    result = manage("runworker", "--burst", env=env)
    assert result.returncode == 0, result.stderr
    assert "task=impressions.tasks.flush_impressions_task" in result.stderr
    assert "outcome=succeeded" in result.stderr
    assert stored_counts(expected) == expected


@pytest.mark.sqs
@pytest.mark.cluster
def test_sqs_with_the_buffer_on_the_redis_cluster(settings, redis_cluster_url, aws_env, manage):
    client = boto3.client("sqs")
    queue_url, dlq_url = create_queue_with_dlq(client, f"e2e-{uuid.uuid4().hex[:10]}")
    sqs = {
        "BACKEND": SQS_BACKEND,
        "OPTIONS": {
            "QUEUE_URL": queue_url,
            "WAIT_TIME_SECONDS": 1,
            "TASK_MODULES": settings.TEST_TASK_MODULES,
        },
    }
    empty_buffer(redis_cluster_url)
    with override_settings(
        TASKS={"default": sqs},
        IMPRESSIONS_REDIS_URL=redis_cluster_url,
        IMPRESSIONS_REDIS_CLUSTER="auto",
        IMPRESSIONS_FLUSH_DELAY=FLUSH_DELAY,
    ):
        started = timezone.now()
        expected = browse_timelines()
    assert message_count(client, queue_url) == 1  # one delayed flush message

    wait_for_flush_delay()
    env = {
        **aws_env,
        "QUEUE_BACKEND": "sqs",
        "SQS_QUEUE_URL": queue_url,
        "SQS_WAIT_TIME_SECONDS": "1",
        "REDIS_URL": redis_cluster_url,
        "IMPRESSIONS_REDIS_CLUSTER": "auto",
        "DATABASE_URL": database_url(),
        "IMPRESSIONS_FLUSH_DELAY": str(FLUSH_DELAY),
    }
    burst_flushes(manage, env, expected)
    assert message_count(client, queue_url) == 0
    assert message_count(client, dlq_url) == 0
    assert timezone.now() - started < timezone.timedelta(minutes=1)
    empty_buffer(redis_cluster_url)
