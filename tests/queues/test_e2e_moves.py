"""The operators' moves, end to end with real workers: the queue from RQ to SQS and back while a
window's flush waits on the old queue, both deployments' web processes and workers side by side,
and the buffer from a standalone Redis to the cluster (docs/operations/aws.md, "Moving to SQS and
ElastiCache Serverless"). Every impression recorded is applied exactly once.

RQ: the queue on the standalone Redis of RQ_REDIS_URL. SQS: moto over HTTP. The buffer: the
standalone Redis of REDIS_URL, then the real 3-node Redis Cluster.
"""

import time
import uuid
from datetime import timedelta

import boto3
import pytest
import redis
from django.db import connection, transaction
from django.test import override_settings

from casusult.models import Post
from impressions import keys
from impressions.flush import flush_pending
from impressions.models import Flush
from impressions.recorder import record_impressions
from tests.factories import make_posts
from tests.impressions.history_check import history_sums
from tests.processes import PROJECT_DIR, start_manage
from tests.queues.crashflush.apps import CRASHED_KEY
from tests.queues.rq.support import rq_settings
from tests.queues.sqs.support import SQS_BACKEND, create_queue_with_dlq, message_count

from .test_e2e import FLUSH_DELAY, database_url, empty_buffer, wait_for_flush_delay

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqs]


def view(posts, viewers, prefix, scheduled=None):
    """Every viewer sees every post once; returns the impressions counted. `scheduled`: a list
    to append the windows these views scheduled to."""
    total = 0
    for viewer in range(viewers):
        result = record_impressions(f"{prefix}:{viewer}", [p.id for p in posts])
        total += result.counted
        if result.scheduled and scheduled is not None:
            scheduled.append(prefix)
    return total


def stored_total(posts):
    """The posts' total, once their history says the same, both read in one snapshot: a
    worker's flush that committed between two reads gave the history one impression a post
    more than the totals read before it (read while the workers run)."""
    ids = [p.id for p in posts]
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        stored = dict(Post.objects.filter(id__in=ids).values_list("id", "impressions"))
        assert history_sums(ids) == stored
    return sum(stored.values())


class Queues:
    """The RQ queue and an SQS queue: the settings a web process of each uses, the environment
    of each one's workers (and of `manage.py` commands), and how many flushes wait on each."""

    def __init__(self, rq_url, buffer_url, aws_env):
        self.rq_url = rq_url
        self.rq_client = redis.Redis.from_url(rq_url)
        self.sqs_client = boto3.client("sqs")
        self.queue_url, self.dlq_url = create_queue_with_dlq(
            self.sqs_client, f"move-{uuid.uuid4().hex[:10]}"
        )
        common = {
            "DATABASE_URL": database_url(),
            "REDIS_URL": buffer_url,
            "IMPRESSIONS_FLUSH_DELAY": str(FLUSH_DELAY),
        }
        self.env = {
            "rq": {**common, "QUEUE_BACKEND": "rq", "RQ_REDIS_URL": rq_url},
            "sqs": {
                **common,
                **aws_env,
                "QUEUE_BACKEND": "sqs",
                "SQS_QUEUE_URL": self.queue_url,
                "SQS_WAIT_TIME_SECONDS": "1",
            },
        }

    def settings(self, backend):
        if backend == "rq":
            return rq_settings(self.rq_url)
        options = {"QUEUE_URL": self.queue_url, "WAIT_TIME_SECONDS": 1}
        return {"TASKS": {"default": {"BACKEND": SQS_BACKEND, "OPTIONS": options}}}

    def waiting(self, backend):
        """Tasks waiting on `backend`'s queue (scheduled or ready)."""
        if backend == "rq":
            return self.rq_client.zcard("rq:scheduled:default") + self.rq_client.llen(
                "rq:queue:default"
            )
        return message_count(self.sqs_client, self.queue_url)


@pytest.fixture
def queues(settings, aws_env):
    redis.Redis.from_url(settings.RQ_REDIS_URL).flushdb()
    empty_buffer(settings.IMPRESSIONS_REDIS_URL)
    yield Queues(settings.RQ_REDIS_URL, settings.IMPRESSIONS_REDIS_URL, aws_env)
    redis.Redis.from_url(settings.RQ_REDIS_URL).flushdb()
    empty_buffer(settings.IMPRESSIONS_REDIS_URL)


def burst(manage, env):
    result = manage("runworker", "--burst", env=env)
    assert result.returncode == 0, result.stderr
    return result.stderr


@pytest.mark.parametrize(("old", "new"), [("rq", "sqs"), ("sqs", "rq")])
@override_settings(IMPRESSIONS_REDIS_TIMEOUT=10.0)  # exact counts, a loaded machine
def test_queue_moved_with_a_window_scheduled_on_the_old_one(queues, manage, old, new):
    """The web processes and workers move to the other queue while a window's flush waits on the
    old one, whose workers are stopped: the new workers find nothing to run, and the new web
    schedules nothing while that window's guard stands (its TTL, IMPRESSIONS_FLUSH_DELAY + 60 s).
    `flush_impressions` applies the counts at once; once the guard lapsed, the next view
    schedules a window on the new queue. An old worker that runs the old window after all
    applies what is pending then and leaves the new window's guard alone: each count once."""
    buffer = redis.Redis.from_url(queues.env[old]["REDIS_URL"])
    posts = make_posts(4)
    with override_settings(**queues.settings(old), IMPRESSIONS_FLUSH_DELAY=FLUSH_DELAY):
        total = view(posts, 10, "old")
    assert queues.waiting(old) == 1
    with override_settings(**queues.settings(new), IMPRESSIONS_FLUSH_DELAY=FLUSH_DELAY):
        total += view(posts, 10, "new")
        assert queues.waiting(new) == 0  # the guard stands: nothing scheduled
        wait_for_flush_delay()
        burst(manage, queues.env[new])  # nothing to run
        assert stored_total(posts) == 0

        flushed = manage("flush_impressions", env=queues.env[new])
        assert flushed.returncode == 0, flushed.stderr
        assert stored_total(posts) == total == 80
        assert buffer.exists(keys.guard_key())  # the old window's, still

        total += view(posts, 5, "meanwhile")  # waits for the next window
        assert queues.waiting(new) == 0
        # IMPRESSIONS_FLUSH_DELAY + 60 s after it was taken, the guard lapses, and the shards'
        # flags with it (they were given its time to live).
        buffer.delete(keys.guard_key(), *(keys.armed_key(s) for s in range(32)))
        total += view(posts, 5, "after")
        assert queues.waiting(new) == 1
        new_guard = buffer.get(keys.guard_key())

        burst(manage, queues.env[old])  # an old worker, once more: the old window's job
        assert queues.waiting(old) == 0
        assert stored_total(posts) == total == 120
        assert buffer.get(keys.guard_key()) == new_guard  # the new window's guard stays

        total += view(posts, 5, "late")
        wait_for_flush_delay()
        burst(manage, queues.env[new])  # the new window
    assert queues.waiting(new) == 0
    assert not buffer.exists(keys.guard_key())
    assert stored_total(posts) == total == 140
    assert sum(Flush.objects.values_list("impressions_applied", flat=True)) == total


@pytest.mark.long
@override_settings(IMPRESSIONS_REDIS_TIMEOUT=10.0)  # exact counts, a loaded machine
def test_old_and_new_web_processes_side_by_side_with_both_workers(queues, manage):
    """A rolling deploy from RQ to SQS: for a while web processes of both record at once, each
    scheduling the windows it arms on its own queue, and workers of both run. Then the RQ
    workers stop. Every window is flushed (by whichever queue scheduled it), each count once."""
    posts = make_posts(6)
    workers = {
        backend: start_manage("runworker", env=queues.env[backend]) for backend in ("rq", "sqs")
    }
    counted = {"rq": 0, "sqs": 0}
    windows = {"rq": [], "sqs": []}
    try:
        # Until each side scheduled windows of its own, both after the other's.
        deadline = time.monotonic() + 60
        n = 0
        while min(len(windows["rq"]), len(windows["sqs"])) < 2:
            assert time.monotonic() < deadline, f"windows scheduled: {windows}"
            backend = ("rq", "sqs")[n % 2]  # the balancer alternates between the two
            with override_settings(**queues.settings(backend), IMPRESSIONS_FLUSH_DELAY=FLUSH_DELAY):
                counted[backend] += view(posts, 1, f"{backend}-{n}", windows[backend])
            n += 1
            time.sleep(0.02)
        # The old web processes are gone; the new ones schedule what the old ones armed last.
        wait_for_flush_delay()
        with override_settings(**queues.settings("sqs"), IMPRESSIONS_FLUSH_DELAY=FLUSH_DELAY):
            # An old window's guard outlives its job by 60 s; the workers share 2 loaded cores.
            deadline = time.monotonic() + 120
            while queues.waiting("rq") or stored_total(posts) < sum(counted.values()):
                if time.monotonic() > deadline:
                    left = (queues.waiting("rq"), queues.waiting("sqs"), stored_total(posts))
                    break
                time.sleep(0.5)
            else:
                left = None
    finally:
        for process in workers.values():
            process.terminate()
        stderr = {
            backend: process.communicate(timeout=60)[1] for backend, process in workers.items()
        }
    assert left is None, (
        f"a window was left unflushed: (waiting on RQ, on SQS, stored) {left} of"
        f" {sum(counted.values())} counted; the workers said:\n"
        + "\n".join(f"{backend}: {text[-2000:]}" for backend, text in stderr.items())
    )
    assert counted["rq"] and counted["sqs"]
    for backend in ("rq", "sqs"):
        assert "outcome=succeeded" in stderr[backend], stderr[backend]
    assert queues.waiting("rq") == 0
    assert stored_total(posts) == sum(counted.values())
    assert sum(Flush.objects.values_list("impressions_applied", flat=True)) == stored_total(posts)


CRASHING_SETTINGS = """
from settings.test import *
INSTALLED_APPS = [*INSTALLED_APPS, "tests.queues.crashflush"]
IMPRESSIONS_FLUSH_BATCH_SIZE = 5
"""


@pytest.mark.cluster
@override_settings(IMPRESSIONS_REDIS_TIMEOUT=10.0)  # exact counts, a loaded machine
def test_buffer_moved_to_the_cluster_the_old_redis_flushed_by_the_command(
    queues, manage, settings, redis_cluster_url, tmp_path, monkeypatch
):
    """REDIS_URL moves from the standalone Redis to the cluster (the queue on SQS throughout):
    the old Redis's pending counts and a killed flush's snapshots there wait, whatever the new
    workers run (the old web's windows included); `flush_impressions --redis-url OLD` applies
    them, exactly once, while the new deployment records and flushes, also after a
    new flush closed the killed flush's ledger row as an orphan (an hour on)."""
    empty_buffer(redis_cluster_url)
    old_url = settings.IMPRESSIONS_REDIS_URL
    old_env = queues.env["sqs"]
    new_env = {**old_env, "REDIS_URL": redis_cluster_url, "IMPRESSIONS_REDIS_CLUSTER": "auto"}
    posts = make_posts(4)
    sqs = queues.settings("sqs")
    with override_settings(**sqs, IMPRESSIONS_FLUSH_DELAY=FLUSH_DELAY):
        total = view(posts, 10, "old")
    assert queues.waiting("sqs") == 1  # the old Redis's window

    # A flush of the old Redis killed after its second batch: its snapshots stay there.
    (tmp_path / "crashing_settings.py").write_text(CRASHING_SETTINGS)
    redis.Redis.from_url(settings.RQ_REDIS_URL).delete(CRASHED_KEY)
    killed = manage("flush_impressions", env={
        **old_env, "DJANGO_SETTINGS_MODULE": "crashing_settings", "CRASH_FLUSH_AFTER_BATCHES": "2",
        "PYTHONPATH": f"{tmp_path}:{PROJECT_DIR}", "RQ_REDIS_URL": settings.RQ_REDIS_URL})  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    (crashed,) = Flush.objects.all()
    assert crashed.outcome == Flush.Outcome.RUNNING and 0 < stored_total(posts) < total
    with override_settings(**sqs, IMPRESSIONS_FLUSH_DELAY=FLUSH_DELAY):
        total += view(posts, 5, "old-after-kill")

    with override_settings(
        **sqs, IMPRESSIONS_REDIS_URL=redis_cluster_url, IMPRESSIONS_FLUSH_DELAY=FLUSH_DELAY
    ):
        total += view(posts, 10, "new")  # the new web, on the cluster
        assert queues.waiting("sqs") == 2
        wait_for_flush_delay()
        burst(manage, new_env)  # both windows, on the cluster: the old Redis waits
        assert queues.waiting("sqs") == 0
        assert stored_total(posts) == crashed_applied(crashed) + 40
        # An hour on, a new flush closes the killed flush's row: no snapshot of it on the cluster.
        monkeypatch.setattr("impressions.ledger.ORPHAN_AFTER", timedelta(0))
        total += view(posts, 2, "new-later")
        flush_pending()
        crashed.refresh_from_db()
        assert crashed.outcome == Flush.Outcome.FAILED

    # The old Redis flushed by the command (the new deployment's environment) while the new
    # deployment records and flushes.
    old_flush = start_manage("flush_impressions", "--redis-url", old_url, env=new_env)
    with override_settings(**sqs, IMPRESSIONS_REDIS_URL=redis_cluster_url):
        total += view(posts, 3, "new-during")
        new_flush = manage("flush_impressions", env=new_env)
    assert new_flush.returncode == 0, new_flush.stderr
    assert old_flush.wait(timeout=120) == 0, old_flush.communicate()[1]
    assert stored_total(posts) == total == 4 * (10 + 5 + 10 + 2 + 3)
    crashed.refresh_from_db()
    assert crashed.outcome == Flush.Outcome.APPLIED and crashed.recovered_by

    again = manage("flush_impressions", "--redis-url", old_url, env=new_env)
    assert "0 impressions applied" in again.stdout
    assert stored_total(posts) == total
    assert sum(Flush.objects.values_list("impressions_applied", flat=True)) == total
    empty_buffer(redis_cluster_url)


def crashed_applied(flush):
    flush.refresh_from_db()
    return flush.impressions_applied
