"""A window's flush in IMPRESSIONS_FLUSH_PARTS parts: one set of tasks per window, disjoint
shards, parts and their duplicates at once while viewers keep coming, batches taking turns."""

import threading
from collections import Counter

import pytest
from django.db import connections
from django.test import override_settings

from casusult.models import Post
from impressions import flush as flush_module
from impressions import ledger
from impressions.flush import flush_pending, part_shards
from impressions.models import Flush
from impressions.recorder import pending_counts, record_impressions
from impressions.tasks import flush_impressions_task
from tests.database import transaction_in_a_thread
from tests.factories import make_posts

from .history_check import history_sums, leaders_mismatches, rollup_mismatches
from .support import scheduled_flushes, viewer_in

pytestmark = pytest.mark.django_db(transaction=True)


def totals(ids):
    return dict(Post.objects.filter(id__in=ids).values_list("id", "impressions"))


def test_the_parts_share_out_the_shards():
    with override_settings(IMPRESSIONS_SHARDS=10):
        parts = [part_shards(part, 4) for part in range(4)]
        assert sorted(shard for shards in parts for shard in shards) == list(range(10))
        assert parts[1] == [1, 5, 9]
        with pytest.raises(ValueError, match="part 4"):
            part_shards(4, 4)


@override_settings(IMPRESSIONS_FLUSH_PARTS=4)
def test_one_window_schedules_one_set_of_parts_and_a_late_part_leaves_the_next_one(buffer):
    posts = make_posts(3)
    ids = [p.id for p in posts]
    for viewer in range(200):  # every shard
        record_impressions(f"u:{viewer}", ids)
    first = scheduled_flushes()
    assert [(list(r.args), r.kwargs["part"], r.kwargs["parts"]) for r in first] == [
        ([], part, 4) for part in range(4)
    ]
    assert len({r.kwargs["window"] for r in first}) == 1

    # Part 2 runs first: it opens the next window; its shards, snapshotted, arm it at once.
    flush_impressions_task.call(**first[2].kwargs)
    record_impressions(viewer_in(2), ids)
    assert len(scheduled_flushes()) == 8
    second_window = scheduled_flushes()[4].kwargs["window"]
    assert second_window != first[0].kwargs["window"]
    # The window's other parts, later: the next window's guard stays, nothing more is scheduled.
    for result in (first[0], first[1], first[3]):
        flush_impressions_task.call(**result.kwargs)
    for shard in range(16):
        record_impressions(viewer_in(shard, taken={viewer_in(2)}), ids)
    assert len(scheduled_flushes()) == 8
    for result in scheduled_flushes()[4:]:
        flush_impressions_task.call(**result.kwargs)
    assert sum(totals(ids).values()) == 3 * (200 + 1 + 16)
    assert pending_counts(ids) == dict.fromkeys(ids, 0)


def run(outcome, name, **kwargs):
    try:
        outcome[name] = flush_pending(**kwargs)
    except Exception as error:
        outcome[name] = error
    finally:
        connections.close_all()


@override_settings(IMPRESSIONS_REDIS_TIMEOUT=10.0)  # a record timing out may still have counted
def test_parts_and_their_duplicates_at_once_while_viewers_keep_coming(buffer):
    """Four parts, each delivered twice, run at once, three rounds, in batches of 7 counters:
    the parts touch the same posts (every shard has viewers of every post) and the same site
    row; nothing is lost, nothing counted twice, no deadlock."""
    posts = make_posts(40)
    ids = [p.id for p in posts]
    stop = threading.Event()
    recorded = Counter()

    def viewers():
        viewer = 0
        while not stop.is_set():
            counted = record_impressions(f"u:{viewer}", ids[viewer % 7 :]).counted
            recorded["total"] += counted
            viewer += 1

    viewer_thread = threading.Thread(target=viewers)
    viewer_thread.start()
    outcome = {}
    for round_ in range(3):
        threads = [
            threading.Thread(
                target=run,
                args=(outcome, f"{round_}-{part}-{copy}"),
                kwargs={"part": part, "parts": 4, "window": f"w{round_}", "batch_size": 7},
            )
            for part in range(4)
            for copy in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    stop.set()
    viewer_thread.join(30)
    assert not [error for error in outcome.values() if isinstance(error, Exception)]
    flush_pending()

    assert recorded["total"] > 200
    assert sum(totals(ids).values()) == recorded["total"]
    assert sum(Flush.objects.values_list("impressions_applied", flat=True)) == recorded["total"]
    assert history_sums(ids) == totals(ids)
    assert rollup_mismatches() == []
    assert leaders_mismatches() == []
    assert not Flush.objects.exclude(outcome__in=["applied", "empty"]).exists()


def test_a_part_stopped_between_batches_is_finished_by_the_next_flush_of_its_shards(
    buffer, monkeypatch
):
    """A part dies after some of its batches committed: the next part of those shards goes on
    from the ledger's marks (a later window, or the same part delivered again)."""
    posts = make_posts(30)
    ids = [p.id for p in posts]
    for viewer in range(60):
        record_impressions(f"s:{viewer}", ids)
    commits = Counter()

    class Stopped(Exception):
        pass

    def stop_after_three(name):
        if name == "after-batch":
            commits["batches"] += 1
            if commits["batches"] == 3:
                raise Stopped

    monkeypatch.setattr(flush_module, "checkpoint", stop_after_three)
    with pytest.raises(Stopped):
        flush_pending(part=1, parts=2, batch_size=5)
    monkeypatch.undo()
    stopped = Flush.objects.get()
    assert stopped.outcome == Flush.Outcome.RUNNING
    assert stopped.marks and not stopped.shards_applied
    assert stopped.start  # part 1 of 2 started half-way through its lines, and went round
    part_total = stopped.impressions_applied
    assert 0 < part_total < 60 * 30

    report = flush_pending(part=1, parts=2, batch_size=5)
    assert report.recovered == [stopped.id]
    stopped.refresh_from_db()
    assert stopped.outcome == Flush.Outcome.APPLIED
    assert (stopped.recovered_by, stopped.marks) == (report.flush_id, {})
    flush_pending(part=0, parts=2)
    assert set(totals(ids).values()) == {60}
    assert history_sums(ids) == totals(ids)
    assert rollup_mismatches() == []


def test_two_flushes_inserting_one_ledger_row_and_a_third_waiting_for_it_do_not_deadlock():
    """A flush that finds no ledger row for its snapshot inserts it; another flush of the same
    snapshot inserted it meanwhile. On MySQL/MariaDB the INSERT IGNORE then left a shared lock on
    that row, which the SELECT … FOR UPDATE after it upgraded: with a third transaction waiting
    for the row in between (a third flush of it, the ledger's prune), InnoDB found a deadlock
    (1213) and failed one flush."""
    flush_id = "20261207T000000-0dup0001"
    searched, inserted, go_on = threading.Event(), threading.Event(), threading.Event()
    errors = []

    def pause_at_each_step(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if "impressions_flush" in sql:
            for step in (searched, inserted):
                if not step.is_set():
                    step.set()
                    go_on.wait(10)
                    go_on.clear()
                    break
        return result

    first = transaction_in_a_thread(lambda: ledger.locked_row(flush_id), errors, pause_at_each_step)
    assert searched.wait(10)  # found no row
    # The other flush's, committed.
    transaction_in_a_thread(lambda: ledger.locked_row(flush_id), errors).join(10)
    go_on.set()
    assert inserted.wait(10)
    third = transaction_in_a_thread(
        lambda: Flush.objects.select_for_update().get(id=flush_id), errors
    )
    third.join(0.5)  # now waiting for the row
    go_on.set()
    for thread in (first, third):
        thread.join(30)
    assert errors == []
