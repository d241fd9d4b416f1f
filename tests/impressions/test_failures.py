"""Injected failures: killed flushes, concurrent flushes, a stopped database, a stopped Redis."""

import socket
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from unittest import mock
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import DataError, connection, connections
from django.test import override_settings
from django.utils import timezone

import devservices
from casusult.models import Post
from impressions import batches, keys, periods, recorder, rollup, schedule, stats
from impressions import flush as flush_module
from impressions.exceptions import DatabaseUnavailable, RedisUnavailable
from impressions.flush import flush_pending
from impressions.holdoff import holdoff
from impressions.models import Flush
from impressions.recorder import get_client, lost, pending_counts, pending_status
from impressions.recorder import record_impressions as record
from impressions.redis_client import reset_clients
from impressions.reloads import reloads
from impressions.signals import flush_finished
from impressions.tasks import flush_impressions_task
from tests.database import other_connection
from tests.factories import make_posts
from tests.queues.rq.support import rq_settings

from .history_check import daily_counts, history_sums, leaders_mismatches, rollup_mismatches
from .support import (
    APP_REDIS_TIMEOUT,
    killed_in_a_child,
    reset_loss_counter,
    scheduled_flushes,
    subprocess_env,
    viewer_in,
)

pytestmark = pytest.mark.django_db(transaction=True)


def kill_a_flush_at(point):
    """Run a flush in a forked child that SIGKILLs itself at checkpoint `point`."""
    killed_in_a_child(flush_module, "checkpoint", flush_pending, when=lambda name: name == point)


def totals(posts):
    return dict(Post.objects.filter(id__in=[p.id for p in posts]).values_list("id", "impressions"))


def assert_history_matches_totals(posts):
    """Every post's daily rows sum to its total; week, month and site rows sum the daily rows;
    the open days' leaders are their tops."""
    assert history_sums([p.id for p in posts]) == totals(posts)
    assert rollup_mismatches() == []
    assert leaders_mismatches() == []


def view_all(posts, viewers, prefix="u", now=None):
    for viewer in range(viewers):
        record(f"{prefix}:{viewer}", [p.id for p in posts], now=now)


def around_midnight():
    """23:59:59 and 00:00:01 either side of yesterday's midnight (TIME_ZONE): two days, both kept."""
    yesterday = periods.day_of(timezone.now()) - timedelta(days=1)
    midnight = datetime.combine(yesterday, datetime.min.time(), timezone.get_default_timezone())
    return midnight - timedelta(seconds=1), midnight + timedelta(seconds=1)


@pytest.mark.parametrize("point", ["after-snapshot", "before-commit", "after-commit"])
def test_a_flush_killed_at_any_point_is_completed_exactly_once(buffer, point):
    posts = make_posts(6)
    before, after = around_midnight()
    view_all(posts, 25, now=before)
    kill_a_flush_at(point)
    # The server let go of the dead flush's session lock: the roll-up's batches need not wait.
    assert rollup.wait_for_flushes(before.date(), patience=10) is True
    killed_id = single_leftover_snapshot_id()
    applied_before = Flush.objects.filter(id=killed_id, outcome="applied").exists()
    assert applied_before == (point == "after-commit")

    view_all(posts[:2], 5, prefix="s", now=after)  # more views after the crash, the next day
    report = flush_pending()

    assert report.recovered == [killed_id]
    expected = {p.id: 25 + (5 if p in posts[:2] else 0) for p in posts}
    assert totals(posts) == expected
    assert_history_matches_totals(posts)
    assert daily_counts([p.id for p in posts]) == {
        **{(p.id, before.date()): 25 for p in posts},
        **{(p.id, after.date()): 5 for p in posts[:2]},
    }
    assert pending_counts([p.id for p in posts]) == dict.fromkeys(expected, 0)
    assert flush_pending().impressions_applied == 0
    assert_history_matches_totals(posts)
    # The ledger counts each impression once, the killed flush's committed batches in its row.
    assert sum(Flush.objects.values_list("impressions_applied", flat=True)) == 6 * 25 + 2 * 5


def test_a_web_process_killed_before_enqueueing_the_flush_delays_it_one_guard_at_most(buffer):
    """The first view of a window took the schedule guard, and its process died before the flush
    was enqueued: nothing runs that window. Once the guard lapses, the next view in any shard
    schedules the flush. Before, a shard first viewed while the dead process's guard held kept
    its flag a full guard's time from then, up to twice as long as the guard: its views
    scheduled nothing, though the dashboard said "the next impression schedules one"."""
    post = make_posts(1)[0]
    # The record script (on a cluster, arm_flush) took the guard; the flush is never enqueued.
    killed_in_a_child(schedule, "enqueue_flush", lambda: record(viewer_in(0), [post.id]))
    client = get_client()
    assert client.exists(keys.guard_key()) and scheduled_flushes() == []
    client.pexpire(keys.guard_key(), 300)  # near its lapse (FLUSH_DELAY + 60 s after it was taken)
    other = viewer_in(1)
    assert not record(other, [post.id]).scheduled  # the guard says a flush is on its way
    time.sleep(0.35)
    assert record(viewer_in(1, taken={other}), [post.id]).scheduled
    flush_pending()
    assert totals([post]) == {post.id: 3}


def single_leftover_snapshot_id():
    client = get_client()
    found = set()
    for shard in range(16):
        found |= {member.decode() for member in client.smembers(f"{{imp:{shard}}}:snapshots")}
    assert len(found) == 1, found
    return found.pop()


def test_a_stalled_flush_overtaken_by_another_counts_once(buffer, monkeypatch):
    """Flush A stalls holding its snapshot; flush B applies A's snapshot; then A carries on."""
    posts = make_posts(5)
    view_all(posts, 20)
    flush_a, resume, outcome = stalled_flush(monkeypatch, "before-apply")
    view_all(posts, 3, prefix="late")  # lands in pending, after A's snapshot
    outcome["b"] = flush_pending()
    resume.set()
    flush_a.join(30)

    assert outcome["b"].impressions_applied == 100 + 15
    assert outcome["a"].impressions_applied == 0  # A found its snapshot already applied
    assert set(totals(posts).values()) == {23}
    assert_history_matches_totals(posts)


def stalled_flush(monkeypatch, at):
    """Flush A, in a thread named flush-a, stalled at checkpoint `at` until `resume` is set:
    (its thread, resume, the outcome dict run_flush fills), once it has stalled."""
    stalled, resume = threading.Event(), threading.Event()

    def stall(name):
        if name == at and threading.current_thread().name == "flush-a":
            stalled.set()
            resume.wait(30)

    monkeypatch.setattr(flush_module, "checkpoint", stall)
    outcome = {}
    flush_a = threading.Thread(target=run_flush, args=(outcome, "a"), name="flush-a")
    flush_a.start()
    assert stalled.wait(30)
    return flush_a, resume, outcome


def run_flush(outcome, name):
    try:
        outcome[name] = flush_pending()
    except Exception as error:
        outcome[name] = error
    finally:
        connections.close_all()


@override_settings(IMPRESSIONS_REDIS_TIMEOUT=10.0)  # a record timing out may still have counted
def test_concurrent_flushes_while_viewers_keep_coming(buffer):
    posts = make_posts(10)
    ids = [p.id for p in posts]
    stop = threading.Event()
    recorded = []
    by_day = Counter()
    moments = around_midnight()

    def viewers():
        viewer = 0
        while not stop.is_set():
            now = moments[viewer % 2]  # every other viewer after midnight
            counted = record(f"u:{viewer}", ids, now=now).counted
            recorded.append(counted)
            by_day[now.date()] += counted
            viewer += 1

    outcome = {}
    viewer_thread = threading.Thread(target=viewers)
    viewer_thread.start()
    flushers = [threading.Thread(target=repeat_flush, args=(outcome, f"f{n}", 4)) for n in range(3)]
    for thread in flushers:
        thread.start()
    for thread in flushers:
        thread.join(60)
    stop.set()
    viewer_thread.join(30)
    assert not [e for e in outcome.values() if isinstance(e, Exception)]
    flush_pending()

    total = sum(recorded)
    assert total > 100
    assert sum(totals(posts).values()) == total
    applied = sum(Flush.objects.values_list("impressions_applied", flat=True))
    assert applied == total
    assert_history_matches_totals(posts)
    assert stats.daily_totals(min(by_day), max(by_day)) == by_day


def repeat_flush(outcome, name, times):
    for n in range(times):
        run_flush(outcome, f"{name}-{n}")
        time.sleep(0.01)


def terminate_backend(pid):
    with other_connection("postgres", autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_a_stopped_database_connection_keeps_the_counts_for_the_next_flush(
    standalone_buffer, monkeypatch
):
    posts = make_posts(4)
    view_all(posts, 10)
    connection.ensure_connection()

    def kill_db(name):
        if name == "after-snapshot":
            terminate_backend(connection.connection.info.backend_pid)

    monkeypatch.setattr(flush_module, "checkpoint", kill_db)
    with pytest.raises(DatabaseUnavailable, match="stay in Redis"):
        flush_pending()
    monkeypatch.undo()

    ids = [p.id for p in posts]
    assert pending_counts(ids) == dict.fromkeys(ids, 10)  # the snapshot is still in Redis
    report = flush_pending()
    assert len(report.recovered) == 1
    assert set(totals(posts).values()) == {10}
    assert_history_matches_totals(posts)


def test_the_ledger_s_upkeep_refused_fails_the_flush_not_taken_for_a_refused_batch(
    standalone_buffer, monkeypatch
):
    """The upkeep runs before the first batch, in the try that reads a DataError as a batch the
    database refused: a refused prune was taken for one, every entry read again and checked, and
    the flush went on as if nothing failed."""
    posts = make_posts(4)
    view_all(posts, 10)
    ids = [p.id for p in posts]
    calls = []
    prune_ledger = flush_module.ledger.prune_ledger

    def refused_once(snapshot_ids):
        calls.append(snapshot_ids)
        if len(calls) == 1:
            raise DataError("refused")
        return prune_ledger(snapshot_ids)

    monkeypatch.setattr(flush_module.ledger, "prune_ledger", refused_once)
    with pytest.raises(DatabaseUnavailable, match="refused"):
        flush_pending()
    assert set(totals(posts).values()) == {0}
    assert pending_counts(ids) == dict.fromkeys(ids, 10)  # the snapshot is still in Redis
    assert len(flush_pending().recovered) == 1
    assert set(totals(posts).values()) == {10}
    assert_history_matches_totals(posts)


def test_a_connection_lost_in_a_batch_copy_keeps_the_rest_for_the_next_flush(
    standalone_buffer, monkeypatch
):
    """The COPY's errors are Django's too (psycopg's would slip past the flush's handling and
    leave the dead connection to the worker's next task)."""
    posts = make_posts(6)
    view_all(posts, 10)
    connection.ensure_connection()
    copy_text = batches.copy_text
    copies = []

    def lost_at_the_second_copy(lines):
        copies.append(len(lines))
        if len(copies) == 2:
            terminate_backend(connection.connection.info.backend_pid)
        return copy_text(lines)

    monkeypatch.setattr(batches, "copy_text", lost_at_the_second_copy)
    with pytest.raises(DatabaseUnavailable, match="stay in Redis"):
        flush_pending(batch_size=2)
    monkeypatch.undo()
    assert connection.connection is None  # closed: the next flush connects anew

    report = flush_pending()
    assert len(report.recovered) == 1
    assert set(totals(posts).values()) == {10}
    assert_history_matches_totals(posts)


@pytest.mark.parametrize(
    ("point", "nth"),
    [("after-batch", 1), ("before-commit", 2)],
    ids=["between-batches", "in-a-commit"],
)
def test_a_flush_failing_after_a_batch_committed_reports_each_impression_once(
    standalone_buffer, monkeypatch, point, nth
):
    """A flush whose database connection dies after its first batch committed (between two
    batches, or in the second one's commit): the failed attempt's report (flush_finished) counts
    the batches it committed, no more; the next flush, the rest. Before, the failed attempt said
    0 and the next one skipped those batches (the ledger's marks): the metrics fed by the reports
    never counted them, and recorded minus applied never came back to 0."""
    posts = make_posts(6)
    view_all(posts, 10)
    connection.ensure_connection()
    reached = []

    def lose_the_connection(name):
        if name == point:
            reached.append(name)
            if len(reached) == nth:
                terminate_backend(connection.connection.info.backend_pid)

    finished = []

    def remember(sender, report, error, **kwargs):
        finished.append((report.impressions_applied, error))

    monkeypatch.setattr(flush_module, "checkpoint", lose_the_connection)
    flush_finished.connect(remember)
    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            flush_pending(batch_size=2)
        monkeypatch.undo()
        committed = sum(totals(posts).values())
        assert 0 < committed < 60
        assert f"after applying {committed} impressions;" in str(raised.value)
        report = flush_pending()
    finally:
        flush_finished.disconnect(remember)

    (failed, error), (rerun, none) = finished
    assert error is not None and none is None
    assert (failed, rerun) == (committed, 60 - committed)
    assert report.impressions_applied == 60 - committed
    assert set(totals(posts).values()) == {10}
    assert sum(Flush.objects.values_list("impressions_applied", flat=True)) == 60
    assert_history_matches_totals(posts)


def test_a_flush_killed_between_batches_leaves_them_counted_in_its_ledger_row(standalone_buffer):
    """kill -9 after a flush's first batch committed: its report is gone with the process, but
    its ledger row counts that batch (written in the batch's transaction); the next flush's
    report and row count the rest, so the ledger's total is each impression once."""
    posts = make_posts(6)
    view_all(posts, 10)
    killed_in_a_child(
        flush_module,
        "checkpoint",
        lambda: flush_pending(batch_size=2),
        when=lambda name: name == "after-batch",
    )
    killed_id = single_leftover_snapshot_id()
    committed = sum(totals(posts).values())
    assert 0 < committed < 60
    assert Flush.objects.get(id=killed_id).impressions_applied == committed

    report = flush_pending()
    assert report.recovered == [killed_id]
    assert report.impressions_applied == 60 - committed
    assert Flush.objects.get(id=killed_id).impressions_applied == 60  # its snapshot, whole
    assert sum(Flush.objects.values_list("impressions_applied", flat=True)) == 60
    assert set(totals(posts).values()) == {10}


@override_settings(IMPRESSIONS_FLUSH_LOCK_TIMEOUT=0.3)
def test_a_flush_behind_a_transaction_left_open_gives_up_and_keeps_its_counts(standalone_buffer):
    """A session idle in transaction on a counted row held every flush for as long as it stayed
    open: the batch gives up after IMPRESSIONS_FLUSH_LOCK_TIMEOUT, names it, and its counts stay
    in Redis; once the row is free the next flush applies them once."""
    posts = make_posts(3)
    view_all(posts, 2)
    ids = [p.id for p in posts]
    with other_connection() as holder:
        holder.execute(
            f"SELECT 1 FROM {Post._meta.db_table} WHERE id = %s FOR UPDATE", [posts[1].id]
        )
        outcome = {}
        failing = threading.Thread(target=run_flush, args=(outcome, "flush"))
        failing.start()
        failing.join(20)  # without a lock timeout: for as long as the transaction stays open
        assert not failing.is_alive()
        holder.rollback()
    error = outcome["flush"]
    assert isinstance(error, DatabaseUnavailable)
    assert "IMPRESSIONS_FLUSH_LOCK_TIMEOUT (0.3 s)" in str(error)
    assert "stay in Redis" in str(error)
    assert pending_counts(ids) == dict.fromkeys(ids, 2)
    assert set(totals(posts).values()) == {0}

    report = flush_pending()
    assert len(report.recovered) == 1
    assert set(totals(posts).values()) == {2}
    assert_history_matches_totals(posts)


@override_settings(IMPRESSIONS_FLUSH_LOCK_TIMEOUT=0.3)
def test_a_flush_behind_a_stalled_flush_s_batch_gives_up_and_keeps_its_counts(
    standalone_buffer, monkeypatch
):
    """Flush A stalls inside a batch (a worker paused or cut off, its session still open),
    holding its ledger row; flush B, recovering A's snapshot, waited on that row for as long as A
    stayed stalled, and so did every flush after it (left-overs go first): the lock timeout
    began at the batch's statements, after the row's lock. B now gives up after
    IMPRESSIONS_FLUSH_LOCK_TIMEOUT, its own counts kept in Redis; once A goes on, the next flush
    applies them once."""
    posts = make_posts(3)
    view_all(posts, 4)
    flush_a, resume, outcome = stalled_flush(monkeypatch, "before-commit")
    try:
        view_all(posts, 2, prefix="late")  # B's own snapshot
        flush_b = threading.Thread(target=run_flush, args=(outcome, "b"), name="flush-b")
        flush_b.start()
        flush_b.join(10)  # without the limit: for as long as A stays stalled
        assert not flush_b.is_alive()
    finally:
        resume.set()
        flush_a.join(30)
    assert isinstance(outcome["b"], DatabaseUnavailable)
    assert "IMPRESSIONS_FLUSH_LOCK_TIMEOUT (0.3 s)" in str(outcome["b"])
    assert outcome["a"].impressions_applied == 12
    assert set(totals(posts).values()) == {4}

    report = flush_pending()
    assert report.impressions_applied == 6
    assert set(totals(posts).values()) == {6}
    assert_history_matches_totals(posts)


def test_the_task_reschedules_itself_when_the_database_is_down(standalone_buffer, monkeypatch):
    posts = make_posts(2)
    view_all(posts, 3)
    connection.ensure_connection()
    monkeypatch.setattr(
        flush_module,
        "checkpoint",
        lambda name: (
            name == "after-snapshot" and terminate_backend(connection.connection.info.backend_pid)
        ),
    )
    with pytest.raises(DatabaseUnavailable):
        flush_impressions_task.call()
    assert len(scheduled_flushes()) == 2  # the first window's flush, and the retry


def test_the_command_fails_when_the_database_is_unreachable(standalone_buffer, manage):
    posts = make_posts(3)
    view_all(posts, 2)
    env = subprocess_env(connection, DATABASE_URL="postgres://postgres@127.0.0.1:1/nowhere")
    result = manage("flush_impressions", env=env)
    assert result.returncode == 1
    assert "could not flush" in result.stderr
    ids = [p.id for p in posts]
    assert pending_counts(ids) == dict.fromkeys(ids, 2)
    flush_pending()
    assert set(totals(posts).values()) == {2}
    assert_history_matches_totals(posts)


def test_a_stopped_redis_never_breaks_the_timeline(client, private_redis, manage):
    posts = make_posts(3)
    with override_settings(IMPRESSIONS_REDIS_URL=private_redis.url):
        reset_loss_counter()
        assert client.get("/api/timeline/").status_code == 200
        assert pending_counts([p.id for p in posts]) == {p.id: 1 for p in posts}

        private_redis.stop()
        # A reload this process counted is de-duplicated here, without Redis: nothing lost.
        assert client.get("/api/timeline/").status_code == 200
        assert (lost.requests, lost.impressions) == (0, 0)
        reloads.clear()  # as in a process that did not count them: they need Redis
        assert client.get("/").status_code == 200
        assert client.get("/api/timeline/").status_code == 200
        assert (lost.requests, lost.impressions) == (2, 6)
        with pytest.raises(RedisUnavailable):
            flush_pending()
        result = manage(
            "flush_impressions", env=subprocess_env(connection, REDIS_URL=private_redis.url)
        )
        assert result.returncode == 1
        assert "Redis" in result.stderr


SLOW_HOST = "redis.slow-resolver.test"
RESOLVER_DELAY = 1.0  # a held-off page takes far less, even on a busy machine


def slow_resolver(monkeypatch):
    """The buffer's URL with a host name whose lookups take RESOLVER_DELAY and fail while
    `resolver["answers"]` is False (else it is the buffer's server), and `later`, seconds the
    hold-off's clock runs ahead of the real one; the hold-off's first wait is 30 s (longer than
    the pages take on a busy machine), its longest 300 s."""
    resolver = {"answers": False}
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host == SLOW_HOST:
            if not resolver["answers"]:
                time.sleep(RESOLVER_DELAY)
                raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
            host = "127.0.0.1"
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    later = [0.0]
    monkeypatch.setattr(holdoff, "clock", lambda: time.monotonic() + later[0])
    monkeypatch.setattr(holdoff, "FIRST", 30.0)
    monkeypatch.setattr(holdoff, "LONGEST", 300.0)
    address = urlsplit(settings.IMPRESSIONS_REDIS_URL)
    url = address._replace(netloc=f"{SLOW_HOST}:{address.port or 6379}").geturl()
    return url, resolver, later


@override_settings(IMPRESSIONS_REDIS_TIMEOUT=APP_REDIS_TIMEOUT)
def test_a_resolver_that_does_not_answer_holds_up_one_page_a_while_not_each(
    client, standalone_buffer, monkeypatch
):
    """redis-py looks the host up at each connection attempt, out of IMPRESSIONS_REDIS_TIMEOUT's
    reach: with a resolver that took 0.6 s to fail, every timeline page took 0.6 s. After one
    such failure the request path leaves Redis alone a while (the impressions lost, counted);
    once the name resolves again, the pages count again."""
    posts = make_posts(3)
    ids = [p.id for p in posts]
    url, resolver, later = slow_resolver(monkeypatch)
    with override_settings(IMPRESSIONS_REDIS_URL=url):
        reset_loss_counter()
        took = []
        for _ in range(6):  # new cookie-less viewers: the day's salt is in Redis
            started = time.monotonic()
            assert client.get("/api/timeline/").status_code == 200
            took.append(time.monotonic() - started)
        assert took[0] >= RESOLVER_DELAY
        assert max(took[1:]) < RESOLVER_DELAY
        assert (lost.requests, lost.impressions) == (6, 18)

        later[0] += 31  # the wait is over: a logged-in viewer's call tries, slowly again
        started = time.monotonic()
        assert record("u:1", ids).lost == 3
        assert time.monotonic() - started >= RESOLVER_DELAY
        started = time.monotonic()
        assert record("u:2", ids).lost == 3
        assert time.monotonic() - started < RESOLVER_DELAY

        resolver["answers"] = True
        later[0] += 61
        assert client.get("/api/timeline/").status_code == 200
        assert pending_counts(ids) == dict.fromkeys(ids, 1)
        assert (lost.requests, lost.impressions) == (8, 24)


@override_settings(IMPRESSIONS_REDIS_TIMEOUT=APP_REDIS_TIMEOUT)
@override_settings(IMPRESSIONS_IP_NEW_VIEWERS_PER_HOUR=0)
def test_a_page_that_needs_no_redis_to_know_its_viewer_does_not_end_the_hold_off(
    client, standalone_buffer, monkeypatch
):
    """A new cookie-less viewer with the day's salt known and no budget to ask for makes no call
    before its impressions'; the one trying again after a wait ended the hold-off all the same,
    so its own slow failure started it over at its first wait instead of doubling it."""
    make_posts(2)
    url, resolver, later = slow_resolver(monkeypatch)
    with override_settings(IMPRESSIONS_REDIS_URL=url):
        resolver["answers"] = True
        assert client.get("/api/timeline/").status_code == 200  # the salt, known from now on
        resolver["answers"] = False
        reset_clients()  # no connection kept: the next call looks the name up
        client.cookies.clear()  # a new viewer each page
        assert client.get("/api/timeline/", HTTP_USER_AGENT="another").status_code == 200
        assert holdoff.wait == 30.0
        later[0] += 31
        client.cookies.clear()
        assert client.get("/api/timeline/", HTTP_USER_AGENT="a third").status_code == 200
        assert holdoff.wait == 60.0


def test_the_losses_of_an_outages_last_seconds_are_logged_once_redis_answers(
    standalone_buffer, monkeypatch, caplog
):
    # The loss lines are held 10 s: without a line when calls succeed again, an outage shorter
    # than that would show its first call's loss only, until the next outage.
    now = [1000.0]
    monkeypatch.setattr(recorder, "lost", recorder.LossCounter(clock=lambda: now[0]))
    with override_settings(IMPRESSIONS_REDIS_URL=f"redis://127.0.0.1:{devservices.free_port()}/0"):
        for call in range(5):  # 2 s of refused connections
            record(f"u:{call}", [1, 2])
            now[0] += 0.5
    record("u:back", [1])  # within 10 s of the last line: still one line every 10 s at most
    now[0] += 8
    record("u:later", [2])
    record("u:last", [3])
    lines = [r for r in caplog.records if r.name == "impressions.recorder"]
    assert [(line.lost, line.calls, line.error) for line in lines] == [
        (2, 1, "ConnectionError"),
        (8, 4, "ConnectionError"),  # once, by the first call that succeeds after 10 s
    ]
    assert "recording works again" in lines[1].getMessage()
    assert recorder.lost.impressions == 10


@override_settings(IMPRESSIONS_REDIS_TIMEOUT=APP_REDIS_TIMEOUT)
def test_a_slow_redis_costs_the_impressions_not_the_page(client, private_redis):
    posts = make_posts(2)
    ids = [p.id for p in posts]
    with override_settings(IMPRESSIONS_REDIS_URL=private_redis.url):
        reset_loss_counter()
        record("u:warm", ids)
        redis.Redis.from_url(private_redis.url).client_pause(300)
        started = time.monotonic()
        assert client.get("/api/timeline/").status_code == 200
        assert time.monotonic() - started < 0.25  # gave up after the 50 ms timeout
        assert lost.impressions == 2
        time.sleep(0.35)
        record("u:later", ids)  # Redis answers again: the loss is reported with this call
        counts, reported_lost = pending_status(ids)
        assert counts == dict.fromkeys(ids, 2)
        assert reported_lost == 2
        assert lost.unreported == 0


def test_a_flush_gives_up_on_an_unresponsive_redis_after_one_timeout(
    standalone_buffer, settings, caplog
):
    # A listener that takes connections and never answers: each command waits out the flush's
    # timeout. The flush's first command fails it (RedisUnavailable); holding the full Redis's
    # flush guard first waited out a timeout of its own (20 s a failed flush by default, not 10).
    silent = socket.create_server(("127.0.0.1", 0))
    taken = []

    def accept():
        while True:
            try:
                taken.append(silent.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    settings.IMPRESSIONS_REDIS_URL = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
    settings.IMPRESSIONS_REDIS_CLUSTER = "false"  # as a worker's cached client: no INFO first
    settings.IMPRESSIONS_FLUSH_REDIS_TIMEOUT = 0.3
    try:
        with pytest.raises(RedisUnavailable):
            flush_pending()
    finally:
        silent.close()
    assert len(taken) == 1  # one command, one connection: no retry, nothing before it
    assert "flush guard" not in caplog.text


def test_a_hanging_task_backend_holds_up_one_request_a_while_not_each(
    standalone_buffer, settings, caplog
):
    # A listener that takes the connection and never answers: RQ waits out its socket timeout.
    silent = socket.create_server(("127.0.0.1", 0))
    url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0?socket_timeout=1"
    for name, value in rq_settings(url).items():
        setattr(settings, name, value)
    clock = FakeClock()
    posts = make_posts(3)
    try:
        with mock.patch.object(schedule, "backoff", schedule.Backoff(clock)):
            started = time.monotonic()
            assert not record("u:1", [posts[0].pk]).scheduled
            assert time.monotonic() - started >= 1  # the first one waited for the queue
            # Nothing tries again on its own ("tries again in 5 s" said it did): a later view.
            assert "process's first view after 5 s schedules it" in caplog.text
            started = time.monotonic()
            assert not record("u:2", [posts[1].pk]).scheduled
            assert time.monotonic() - started < 0.5  # the next ones do not, for 5 s
            clock.now += 5.1
            started = time.monotonic()
            record("u:3", [posts[2].pk])
            assert time.monotonic() - started >= 1  # then one tries again, and waits 10 s
            assert schedule.backoff.wait == 10
    finally:
        silent.close()
    assert pending_counts([post.pk for post in posts]) == {post.pk: 1 for post in posts}
    assert not get_client().exists(keys.guard_key())  # the next request after the wait schedules it


def test_a_refused_flush_enqueue_is_logged_without_the_endpoint_s_password(
    standalone_buffer, sqs_behind_a_proxy, caplog
):
    # A project's own logging config (caplog's plain handler, no site formatter); the traceback
    # is botocore's, which names the endpoint URL.
    [post] = make_posts(1)
    with mock.patch.object(schedule, "backoff", schedule.Backoff(FakeClock())):
        assert not record("u:1", [post.pk]).scheduled
    [line] = [r for r in caplog.records if r.name == "impressions.schedule"]
    assert line.getMessage().startswith("could not enqueue the impressions flush")
    assert 'EndpointConnectionError: Could not connect to the endpoint URL: "http://proxy:***@' in (
        caplog.text
    )
    assert sqs_behind_a_proxy not in caplog.text


def test_a_redis_error_naming_a_url_is_redacted_in_the_command_s_error_and_the_ledger(
    standalone_buffer, monkeypatch
):
    # redis-py names host and port only; a proxy or a wrapper's error may name the whole URL.
    secret = "s3cret-Pa55"
    url = f"rediss://:{secret}@cache.example:6380/2"

    def unreachable():
        raise redis.ConnectionError(f"Error connecting to {url}: Connection refused")

    monkeypatch.setattr(flush_module, "get_flush_client", unreachable)
    with pytest.raises(CommandError) as refused:
        call_command("flush_impressions")
    assert "rediss://:***@cache.example:6380/2" in str(refused.value)
    assert secret not in str(refused.value)
    assert secret not in Flush.objects.get().error


class FakeClock:
    now = 1000.0

    def __call__(self):
        return self.now


def test_a_flush_the_buffer_refuses_names_the_setting_and_the_server(settings):
    # The server answered "invalid username-password pair" (or "DB index is out of range") and
    # the command said no more: not which setting, nor which server, to fix.
    server = redis.Redis.from_url(settings.IMPRESSIONS_REDIS_URL).connection_pool
    host, port = server.connection_kwargs["host"], server.connection_kwargs["port"]
    settings.IMPRESSIONS_REDIS_URL = f"redis://nobody:wrong-Pa55@{host}:{port}/0"
    reset_clients()
    try:
        with pytest.raises(CommandError) as refused:
            call_command("flush_impressions")
    finally:
        reset_clients()
    message = str(refused.value)
    assert f"IMPRESSIONS_REDIS_URL (redis://nobody:***@{host}:{port}/0)" in message
    assert "wrong-Pa55" not in message
