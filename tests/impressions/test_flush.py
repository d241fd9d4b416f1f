"""Scheduling and flushing: one flush per window, batched updates, ledger, command, admin-free."""

import io
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.tasks import default_task_backend
from django.test import override_settings
from django.utils import timezone

from casusult.models import Post
from impressions import flush as flush_module
from impressions import keys, scripts
from impressions.conf import conf
from impressions.flush import flush_pending
from impressions.models import Flush
from impressions.recorder import pending_counts, record_impressions
from impressions.signals import flush_window_lapsed
from impressions.tasks import flush_impressions_task
from tests.factories import make_posts
from tests.queues.rq.support import rq_settings

from .history_check import history_sums, rollup_mismatches
from .support import scheduled_flushes, subprocess_env, viewer_in

pytestmark = pytest.mark.django_db


def impressions_of(posts):
    return dict(Post.objects.filter(id__in=[p.id for p in posts]).values_list("id", "impressions"))


def test_exactly_one_flush_is_scheduled_per_window(buffer):
    posts = make_posts(5)
    before = timezone.now()
    for viewer in range(200):  # every shard, many times
        record_impressions(f"u:{viewer}", [p.id for p in posts])
    scheduled = scheduled_flushes()
    assert len(scheduled) == 1
    assert scheduled[0].task.name == "flush_impressions_task"
    run_after = scheduled[0].task.run_after
    assert before + timedelta(seconds=299) < run_after < timezone.now() + timedelta(seconds=301)

    # The flush opens the next window: the next impression schedules exactly one more.
    flush_impressions_task.call()
    assert set(impressions_of(posts).values()) == {200}
    for viewer in range(200, 260):
        record_impressions(f"u:{viewer}", [posts[0].id])
    assert len(scheduled_flushes()) == 2


def test_impressions_arriving_during_a_flush_wait_for_the_next_one(buffer, monkeypatch):
    posts = make_posts(3)
    ids = [p.id for p in posts]
    record_impressions("u:1", ids)

    def more_views(name):
        if name == "after-snapshot":
            record_impressions("u:2", ids)
            record_impressions("u:1", ids)  # still inside u:1's window: nothing

    monkeypatch.setattr(flush_module, "checkpoint", more_views)
    first = flush_pending()
    monkeypatch.undo()
    assert first.impressions_applied == 3
    assert pending_counts(ids) == dict.fromkeys(ids, 1)
    assert len(scheduled_flushes()) == 2  # the late view scheduled the next flush
    flush_pending()
    assert impressions_of(posts) == dict.fromkeys(ids, 2)


def test_a_duplicate_task_call_applies_nothing_twice(buffer):
    posts = make_posts(4)
    for viewer in range(30):
        record_impressions(f"s:{viewer}", [p.id for p in posts])
    first = flush_impressions_task.call()
    second = flush_impressions_task.call()
    assert first["impressions_applied"] == 120
    assert second["impressions_applied"] == 0
    assert second["outcome"] == "empty"
    assert set(impressions_of(posts).values()) == {30}
    assert Flush.objects.get(id=first["flush_id"]).impressions_applied == 120


def test_batches_and_deleted_posts(standalone_buffer, sql_path):
    posts = make_posts(7)
    record_impressions("u:1", [p.id for p in posts])
    record_impressions("u:2", [p.id for p in posts[:3]])
    Post.objects.filter(id=posts[0].id).delete()
    report = flush_pending(batch_size=2)
    assert report.posts_updated == 6
    assert report.impressions_applied == 6 + 2
    assert (report.posts_dropped, report.impressions_dropped) == (1, 2)
    assert impressions_of(posts[1:]) == {p.id: (2 if p in posts[:3] else 1) for p in posts[1:]}
    row = Flush.objects.get(id=report.flush_id)
    assert (row.outcome, row.posts_updated, row.posts_dropped) == ("applied", 6, 1)
    assert row.finished_at >= row.started_at
    # The history: what the totals got, the deleted post's counts dropped from it too.
    ids = [p.id for p in posts]
    assert history_sums(ids) == {**impressions_of(posts[1:]), posts[0].id: 0}
    assert rollup_mismatches() == []


def test_the_ledger_prunes_old_rows(standalone_buffer):
    old = timezone.now() - timedelta(days=31)
    Flush.objects.create(id="old", started_at=old, finished_at=old, outcome="applied")
    Flush.objects.create(id="recent", started_at=timezone.now(), outcome="applied")
    flush_pending()
    assert not Flush.objects.filter(id="old").exists()
    assert Flush.objects.filter(id="recent").exists()


class Crash(Exception):
    """A flush that dies between two batches."""


def test_the_ledger_keeps_an_old_row_whose_snapshot_is_still_in_redis(
    standalone_buffer, monkeypatch
):
    posts = make_posts(6)
    ids = [post.id for post in posts]
    viewers = []
    for _ in range(3):
        viewers.append(viewer_in(0, taken=viewers))
        record_impressions(viewers[-1], ids)
    # A flush of shard 0 (part 0 of 2) dies after its first batch of 2 posts: its snapshot stays,
    # its row holds the marks. Left there for longer than the ledger's retention (the other
    # part's flushes succeed meanwhile; part 0's keep failing).
    monkeypatch.setattr(flush_module, "checkpoint", crash_at_first("after-batch"))
    with pytest.raises(Crash):
        flush_pending(batch_size=2, part=0, parts=2)
    monkeypatch.setattr(flush_module, "checkpoint", lambda name: None)
    [row] = Flush.objects.all()
    assert row.outcome == Flush.Outcome.RUNNING and row.marks
    old = timezone.now() - timedelta(days=31)
    Flush.objects.filter(id=row.id).update(started_at=old)
    Flush.objects.create(id="20200101T000000-0000dead", started_at=old, outcome="applied")

    flush_pending(part=1, parts=2)  # prunes the ledger: not the row of a snapshot still there
    assert Flush.objects.filter(id=row.id).exists()
    assert not Flush.objects.filter(id="20200101T000000-0000dead").exists()
    report = flush_pending(part=0, parts=2)  # applies the rest of it, from the marks on
    assert report.recovered == [row.id]
    assert set(impressions_of(posts).values()) == {3}  # before: 6 for the first batch's 2 posts
    assert history_sums(ids) == impressions_of(posts)


def crash_at_first(point):
    def checkpoint(name):
        if name == point:
            raise Crash(point)

    return checkpoint


IMMEDIATE_TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}


def test_with_a_backend_that_cannot_defer_the_flush_runs_at_once(
    client, standalone_buffer, django_capture_on_commit_callbacks
):
    posts = make_posts(2)
    # The test's transaction stands for the request's: the flush runs when it commits.
    with override_settings(TASKS=IMMEDIATE_TASKS), django_capture_on_commit_callbacks(execute=True):
        assert client.get("/api/timeline/").status_code == 200
    assert set(impressions_of(posts).values()) == {1}


def failing_view_in_a_transaction(ids):
    with transaction.atomic():
        assert record_impressions("u:1", ids).scheduled
        raise RuntimeError("the view fails after recording")


@pytest.mark.django_db(transaction=True)
def test_a_backend_that_cannot_defer_flushes_once_the_caller_s_transaction_commits(
    standalone_buffer,
):
    """ATOMIC_REQUESTS: the first view of a window schedules the flush inside the request's
    transaction; ImmediateBackend would run it there. A view failing after record() rolled the
    flush's writes back after it had taken the counts out of Redis: they were lost."""
    posts = make_posts(2)
    ids = [p.id for p in posts]
    with override_settings(TASKS=IMMEDIATE_TASKS):
        with pytest.raises(RuntimeError):
            failing_view_in_a_transaction(ids)
        assert set(impressions_of(posts).values()) == {0}
        assert pending_counts(ids) == dict.fromkeys(ids, 1)  # kept for a later flush
        flush_pending()
        assert set(impressions_of(posts).values()) == {1}

        standalone_buffer.delete(keys.guard_key())  # the failed request's window has lapsed
        with transaction.atomic():
            assert record_impressions("u:2", ids).scheduled
            assert set(impressions_of(posts).values()) == {1}  # not inside the transaction
        assert set(impressions_of(posts).values()) == {2}  # at its commit
        assert pending_counts(ids) == dict.fromkeys(ids, 0)


@pytest.mark.django_db(transaction=True)
def test_command_flushes_and_prints_what_it_applied(standalone_buffer, manage):
    posts = make_posts(3)
    record_impressions("u:1", [p.id for p in posts])
    result = manage("flush_impressions", "--batch-size", "2", env=subprocess_env(connection))
    assert result.returncode == 0, result.stderr
    assert "3 impressions applied to 3 posts" in result.stdout
    assert set(impressions_of(posts).values()) == {1}

    bad = manage("flush_impressions", "--batch-size", "0", env=subprocess_env(connection))
    assert bad.returncode != 0
    assert "--batch-size" in bad.stderr


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("command", ["flush_impressions", "rollup_impressions"])
def test_the_commands_print_nothing_at_verbosity_0(standalone_buffer, command):
    """As Django's own commands: cron runs them with -v 0 to mail nothing when all went well (the
    API's testing example calls flush_impressions so); a failure still raises."""
    record_impressions("u:1", [post.id for post in make_posts(2)])
    quiet, told = io.StringIO(), io.StringIO()
    call_command(command, verbosity=0, stdout=quiet)
    call_command(command, stdout=told)
    assert quiet.getvalue() == ""
    assert told.getvalue() != ""


def test_a_lost_flush_message_is_rescheduled_when_the_guard_lapses(buffer):
    post = make_posts(1)[0]
    record_impressions("u:1", [post.id])
    assert len(scheduled_flushes()) == 1
    default_task_backend.clear()  # the message is lost: that flush never runs
    record_impressions("u:2", [post.id])
    assert scheduled_flushes() == []  # the guard still says "scheduled"
    # Let the guard and every shard flag lapse for real (their TTL is delay + 60 s).
    for key in [keys.guard_key(), *(keys.armed_key(shard) for shard in range(16))]:
        buffer.pexpire(key, 1)

    time.sleep(0.01)
    record_impressions("u:3", [post.id])
    assert len(scheduled_flushes()) == 1
    flush_pending()
    assert impressions_of([post]) == {post.id: 3}


def lapse_the_schedule(client):
    """The guard and every shard flag lapse (their TTL is delay + 60 s after the guard was taken),
    for real: expired by Redis; the scheduled window's key is as old as that by then."""
    for key in [keys.guard_key(), *(keys.armed_key(shard) for shard in range(16))]:
        client.pexpire(key, 1)
    if client.exists(keys.scheduled_window_key()):
        aged = scripts.SCHEDULED_WINDOW_TTL - conf.GUARD_TTL
        client.pexpire(keys.scheduled_window_key(), aged * 1000)
    time.sleep(0.01)


def warnings_of(caplog, logger_name):
    return [r for r in caplog.records if r.name == logger_name and r.levelname == "WARNING"]


def test_a_lost_flush_is_logged_once_by_the_view_that_schedules_the_next(buffer, caplog):
    """A flush task lost (the queue purged, the RQ Redis emptied, the message in the dead-letter
    queue): its guard lapses and the next view schedules again, exact. Before, no line said so;
    now the view that schedules the next window says, once, that the last one's flush never
    started, and when it was scheduled. A window whose flush ran says nothing."""
    post = make_posts(1)[0]
    record_impressions("u:1", [post.id])
    default_task_backend.clear()  # the message is lost: that flush never runs
    lapse_the_schedule(buffer)
    caplog.set_level("WARNING")
    for viewer in range(2, 40):  # one view schedules; the others find the guard taken
        record_impressions(f"u:{viewer}", [post.id])
    assert len(scheduled_flushes()) == 1
    lost = warnings_of(caplog, "impressions.tasks")
    assert len(lost) == 1, [r.getMessage() for r in lost]
    message = lost[0].getMessage()
    assert "no flush of the window scheduled at" in message
    assert "before its schedule guard lapsed (IMPRESSIONS_FLUSH_DELAY + 60 s)" in message
    assert "Check that runworker runs" in message
    assert float(lost[0].lost_window) == pytest.approx(time.time(), abs=30)

    caplog.clear()
    flush_impressions_task.call(window=scheduled_flushes()[0].kwargs["window"])
    record_impressions("u:99", [post.id])  # the next window: its last one's flush ran
    assert len(scheduled_flushes()) == 2
    assert warnings_of(caplog, "impressions.tasks") == []
    assert warnings_of(caplog, "impressions.flush") == []
    flush_pending()
    assert impressions_of([post]) == {post.id: 40}


def test_a_flush_started_after_its_guard_lapsed_says_it_was_late(buffer, caplog):
    """A window's task run after its guard lapsed (no worker for a while, then one): the flush
    says it started late, once a minute at most in a process; one run on time says nothing, nor
    one whose guard a flush of no window deleted (flush_pending() called directly)."""
    post = make_posts(1)[0]
    record_impressions("u:1", [post.id])
    late = scheduled_flushes()[0]
    # That window was scheduled 400 s ago (the guard's value, which its token and the scheduled
    # window's key carry, is when), and its guard lapsed: its task runs only now.
    token, _, taken = late.kwargs["window"].partition("@")
    scheduled_at = f"{float(taken) - 400:.3f}"
    buffer.set(keys.scheduled_window_key(), scheduled_at)
    lapse_the_schedule(buffer)
    caplog.set_level("WARNING")
    flush_module.late_windows.next_line.clear()
    late.task.call(**{**late.kwargs, "window": f"{token}@{scheduled_at}"})
    said = warnings_of(caplog, "impressions.flush")
    assert len(said) == 1
    assert " started 400 s after its window was scheduled, past its schedule guard" in (
        said[0].getMessage()
    )
    assert "(IMPRESSIONS_FLUSH_DELAY + 60 s)" in said[0].getMessage()
    assert impressions_of([post]) == {post.id: 1}
    assert not buffer.exists(keys.scheduled_window_key())  # its flush ran: no lost window

    caplog.clear()
    record_impressions("u:2", [post.id])  # scheduled, then run on time
    on_time = scheduled_flushes()[-1]
    on_time.task.call(**on_time.kwargs)
    record_impressions("u:3", [post.id])
    flush_pending()  # no window: deletes the guard the next task was scheduled under
    on_time = scheduled_flushes()[-1]
    on_time.task.call(**on_time.kwargs)
    record_impressions("u:4", [post.id])  # the next window: no flush lost
    assert warnings_of(caplog, "impressions.flush") == []
    assert warnings_of(caplog, "impressions.tasks") == []
    flush_pending()
    assert impressions_of([post]) == {post.id: 4}


def test_a_lapse_receiver_that_raises_stops_no_schedule(buffer, caplog):
    """A project's receiver of flush_window_lapsed that fails (its metric's storage full, a bug):
    the lapse was reported between taking the guard and enqueueing its flush, so the flush was
    never enqueued and the guard held; the next take found the window key again, failed again,
    and no view scheduled a flush from then on. Now the failure is logged and the flush goes."""
    post = make_posts(1)[0]
    record_impressions("u:1", [post.id])
    default_task_backend.clear()  # that flush's task is lost
    lapse_the_schedule(buffer)

    def failing(**kwargs):
        raise OSError("no space left for the metric")

    flush_window_lapsed.connect(failing, dispatch_uid="test-failing-lapse-receiver")
    try:
        caplog.set_level("WARNING")
        assert record_impressions("u:2", [post.id]).scheduled
    finally:
        flush_window_lapsed.disconnect(dispatch_uid="test-failing-lapse-receiver")
    [failed] = [r for r in caplog.records if r.levelname == "ERROR"]  # Django's send_robust's
    assert "failing" in failed.getMessage() and "no space left" in failed.getMessage()
    assert len(warnings_of(caplog, "impressions.tasks")) == 1  # the lapse is logged all the same
    [scheduled] = scheduled_flushes()
    scheduled.task.call(**scheduled.kwargs)
    assert impressions_of([post]) == {post.id: 2}


# The OPEN_WINDOW of the build before the lost flush warning (b991d1a): today's without the
# scheduled window's key (KEYS[3]), which that build did not know; the rest does what it did.
EARLIER_OPEN_WINDOW = "\n".join(
    line for line in scripts.OPEN_WINDOW.splitlines() if "KEYS[3]" not in line
)


def test_a_window_an_earlier_build_s_worker_flushed_is_not_called_lost(buffer, caplog):
    """A rolling deploy: the new web processes schedule, a worker of the build before runs the
    window's flush on time; its guard deleted, the scheduled window's key stays. The next view,
    within the guard's time of that window's scheduling, found it and warned "lost or late" (and
    counted it) for each window while such a worker ran; a guard deleted that soon did not lapse.
    """
    post = make_posts(1)[0]
    record_impressions("u:1", [post.id])
    [scheduled] = scheduled_flushes()
    window = scheduled.kwargs["window"]
    buffer.execute_command(
        "EVAL", EARLIER_OPEN_WINDOW, 2, keys.guard_key(), keys.window_key(window), 60, window
    )
    assert not buffer.exists(keys.guard_key()) and buffer.exists(keys.scheduled_window_key())
    flush_pending(keep_schedule=True)  # the rest of that worker's flush
    caplog.set_level("WARNING")
    assert record_impressions("u:2", [post.id]).scheduled
    assert warnings_of(caplog, "impressions.tasks") == []
    taken = scheduled_flushes()[-1].kwargs["window"].partition("@")[2]
    assert buffer.get(keys.scheduled_window_key()).decode() == taken  # the new window's
    flush_pending()
    assert impressions_of([post]) == {post.id: 2}


@pytest.mark.parametrize("parts", [1, 3])
def test_an_earlier_builds_flush_of_the_window_is_no_lost_flush(buffer, caplog, parts):
    """As above, with the window in parts: an earlier build's worker runs the window's first part
    (deleting the guard, not the scheduled window's key) and the others; the next window,
    scheduled a moment later, says nothing, and the counts are applied once."""
    post = make_posts(1)[0]
    with override_settings(IMPRESSIONS_FLUSH_PARTS=parts):
        record_impressions("u:1", [post.id])
        [first, *others] = scheduled_flushes()
        window = first.kwargs["window"]
        buffer.execute_command(
            "EVAL", EARLIER_OPEN_WINDOW, 2, keys.guard_key(), keys.window_key(window), 60, window
        )
        for task in [first, *others]:  # the first part finds its window opened: as that build's
            task.task.call(**task.kwargs)
        assert buffer.exists(keys.scheduled_window_key())
        caplog.set_level("WARNING")
        record_impressions("u:2", [post.id])
        assert len(scheduled_flushes()) == 2 * parts
        assert warnings_of(caplog, "impressions.tasks") == []
        assert warnings_of(caplog, "impressions.flush") == []
        flush_pending()
    assert impressions_of([post]) == {post.id: 2}


def test_a_failed_enqueue_releases_the_guard_for_the_next_request(buffer):
    post = make_posts(1)[0]
    with override_settings(**rq_settings("redis://127.0.0.1:1/0")):
        result = record_impressions("u:1", [post.id])
    assert (result.counted, result.scheduled) == (1, False)
    assert not buffer.exists(keys.guard_key())
    assert not buffer.exists(keys.scheduled_window_key())  # no task: the next window warns not
    assert record_impressions("u:2", [post.id]).scheduled  # back on the Dummy backend


def test_a_big_snapshot_is_read_whole_a_chunk_at_a_time(buffer, monkeypatch):
    """A snapshot larger than a chunk (a hash table, not a list pack) is read to its last field
    in many HSCAN calls, each field with its count, on standalone Redis and on the cluster."""
    monkeypatch.setattr(flush_module, "READ_CHUNK", 100)
    key = keys.snapshot_key(5, "20261203T000000-feedf00d")
    fields = {f"{100_000 + n}:20261203".encode(): str(1 + n % 7).encode() for n in range(5_000)}
    buffer.hset(key, mapping=fields)
    calls = []
    hscan = buffer.hscan

    def counted(*args, **kwargs):
        calls.append(kwargs.get("count"))
        return hscan(*args, **kwargs)

    monkeypatch.setattr(buffer, "hscan", counted)
    assert flush_module.read_snapshot(buffer, key) == fields
    assert len(calls) >= 25 and set(calls) == {100}


def test_small_snapshots_are_read_together_and_a_big_one_a_chunk_at_a_time(buffer, monkeypatch):
    """Hashes that hold a chunk together are read in one pipeline, a larger one alone in chunks;
    each comes whole, in the order asked, on standalone Redis and on the cluster (the hashes of
    several shards: several nodes)."""
    monkeypatch.setattr(flush_module, "READ_CHUNK", 100)
    flush_id = "20261203T000000-feedf00d"
    sizes = [30, 40, 20, 500, 60, 70]  # the first three in one round trip, then one each
    hashes, expected = [], []
    for shard, size in enumerate(sizes):
        key = keys.snapshot_key(shard, flush_id)
        fields = {f"{shard}{n:05d}:20261203".encode(): str(1 + n % 7).encode() for n in range(size)}
        buffer.hset(key, mapping=fields)
        hashes.append((key, size))
        expected.append(fields)
    assert flush_module.read_small_snapshots(buffer, hashes) == expected


def test_a_flush_in_progress_whose_snapshots_are_gone_is_marked_failed_after_an_hour(buffer):
    # As after a Redis restart without persistence in the middle of a flush: batches committed,
    # the snapshot gone with the rest of its counts; the row said "in progress" for ever.
    post = make_posts(1)[0]
    record_impressions("u:1", [post.id])
    now = timezone.now()
    stuck = Flush.objects.create(
        id="20261201T000000-0bad0001", started_at=now - timedelta(hours=2), outcome="running"
    )
    recent = Flush.objects.create(
        id="20261201T000000-0bad0002", started_at=now - timedelta(minutes=20), outcome="running"
    )
    report = flush_pending()
    assert report.impressions_applied == 1  # the flush itself goes on as ever
    stuck.refresh_from_db()
    recent.refresh_from_db()
    assert stuck.outcome == Flush.Outcome.FAILED and "snapshots are gone" in stuck.error
    assert recent.outcome == Flush.Outcome.RUNNING  # it may still be running somewhere
