"""The day an impression counts on is Redis's, as its de-duplication window is, not the clock of the
web host that recorded it; a host whose clock is grossly off says so. Child processes whose clock
libfaketime puts off, against the real Redis."""

import time
from datetime import UTC, datetime

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from impressions import keys, periods, recorder, scripts
from impressions.scripts import evalsha
from tests.factories import make_posts
from tests.processes import run_manage, run_python, skewed_clock

from .support import scan_all, subprocess_env

RECORD = """
import django
django.setup()
from impressions.recorder import record_impressions
print(record_impressions("skewed-viewer", [1, 2]).counted)
"""


def pending_days(client):
    """The days of every pending counter."""
    return {
        field.decode().partition(":")[2]
        for key in scan_all(client, "*:pending:*")
        for field in client.hkeys(key)
    }


def redis_day(client):
    seconds, _ = client.time()
    return keys.day_text(periods.day_of(datetime.fromtimestamp(seconds, UTC)))


@pytest.mark.parametrize(
    ("offset", "says"),
    # Three days off (a bad boot), none of the days the host names around its own holds Redis's
    # time: the script refuses them, the host asks again with the days around Redis's.
    [
        ("+1d", "86400 s ahead of"),
        ("-1d", "86400 s behind"),
        ("+3d", "259200 s ahead of"),
        ("-3d", "259200 s behind"),
    ],
)
def test_a_host_a_day_off_counts_on_redis_s_day_and_says_its_clock_is_off(
    standalone_buffer, offset, says
):
    before = redis_day(standalone_buffer)
    env = {"REDIS_URL": settings.IMPRESSIONS_REDIS_URL, **skewed_clock(offset)}
    result = run_python(RECORD, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2"]
    days = pending_days(standalone_buffer)
    assert days and days <= {before, redis_day(standalone_buffer)}
    assert f"clock is {says} Redis" in result.stderr


def test_a_refused_call_asked_again_counts_its_views_and_losses_once(
    buffer, host_clock, monkeypatch
):
    # On either server: the refused call wrote nothing, neither its views nor the losses it
    # reports; the next call names Redis's days at once (one call more a process, not a request).
    calls = []

    def counted(client, name, script_keys, args):
        calls.append(name)
        return scripts.evalsha(client, name, script_keys, args)

    monkeypatch.setattr(recorder, "evalsha", counted)
    host_clock(3 * 86400)
    recorder.lost.unreported = 3
    before = redis_day(buffer)
    assert recorder.record_impressions("u:1", [1, 2]).counted == 2
    assert recorder.record_impressions("u:2", [1]).counted == 1
    assert calls == ["RECORD"] * 3
    assert pending_days(buffer) <= {before, redis_day(buffer)}
    assert recorder.pending_status([1, 2]) == ({1: 2, 2: 1}, 3)
    assert recorder.lost.unreported == 0


@pytest.mark.parametrize("year", [1970, 1969])
def test_a_host_clock_reset_to_the_epoch_counts_on_redis_s_day(buffer, host_clock, year):
    # An RTC reset boots a host at 1970-01-01: the day before's first second, and the others
    # before 1970 too, are negative, which the script's day argument took for no days at all.
    reset = datetime(year, 1, 1, 1, tzinfo=timezone.get_default_timezone()).timestamp()
    host_clock(reset - time.time())
    before = redis_day(buffer)
    assert recorder.record_impressions("u:1", [1, 2]).counted == 2
    assert pending_days(buffer) <= {before, redis_day(buffer)}


def record_at(client, viewer, script_now, day):
    script_keys, args = recorder.record_call(0, viewer, [7], script_now, day, guard=False)
    return evalsha(client, "RECORD", script_keys, args)


def test_around_midnight_the_day_is_the_one_of_the_script_s_time(buffer):
    # A host a few seconds off near midnight: its day argument names its own day and both
    # neighbours; the time the script counts at (Redis's) picks among them.
    today = recorder.Today(clock=lambda: datetime(2026, 3, 28, 12, tzinfo=UTC).timestamp())
    day = today.argument()
    start = datetime(2026, 3, 28, tzinfo=UTC).timestamp()
    end = datetime(2026, 3, 29, tzinfo=UTC).timestamp()
    for viewer, moment in [("a", start - 0.5), ("b", start), ("c", end - 0.5), ("d", end)]:
        record_at(buffer, viewer, moment, day)
    ((key,),) = [[key] for key in scan_all(buffer, "*:pending:*")]
    assert buffer.hgetall(key) == {
        b"7:20260327": b"1",
        b"7:20260328": b"2",
        b"7:20260329": b"1",
    }


def test_a_time_in_none_of_the_days_named_writes_nothing_and_says_it(buffer):
    # The caller asks again with the days around the time returned; a loss reported once.
    today = recorder.Today(clock=lambda: datetime(2026, 3, 28, 12, tzinfo=UTC).timestamp())
    day = today.argument()
    the_day_before = datetime(2026, 3, 27, tzinfo=UTC).timestamp()
    for moment in [the_day_before - 0.5, the_day_before + 3 * 86400]:
        script_keys, args = recorder.record_call(0, "a", [7], moment, day, 3, guard=False)
        refused, at = evalsha(buffer, "RECORD", script_keys, args)
        assert (refused, float(at)) == (b"day", moment)
    assert scan_all(buffer, "*") == []


@pytest.mark.django_db(transaction=True)  # the child reads and writes the test database
def test_a_worker_a_day_ahead_flushes_exactly_and_says_its_clock_is_off(standalone_buffer):
    # Its ledger and its roll-up's "today" are its own clock's: an operator must hear of it.
    (post,) = make_posts(1)
    recorder.record_impressions("viewer", [post.id])
    env = {**subprocess_env(connection), **skewed_clock("+1d")}
    result = run_manage("flush_impressions", env=env)
    assert result.returncode == 0, result.stderr
    assert "clock is 86400 s ahead of Redis" in result.stderr
    post.refresh_from_db()
    assert post.impressions == 1


def test_a_web_host_a_day_ahead_shows_its_offset_in_the_metrics(standalone_buffer):
    code = RECORD + "from casusult.metrics import render_metrics\nprint(render_metrics().decode())"
    env = {"REDIS_URL": settings.IMPRESSIONS_REDIS_URL, **skewed_clock("+1d")}
    result = run_python(code, env=env)
    assert result.returncode == 0, result.stderr
    (line,) = [
        line
        for line in result.stdout.splitlines()
        if line.startswith("impressions_clock_offset_seconds ")
    ]
    assert 86395 < float(line.split()[1]) <= 86400


def test_on_the_cluster_the_schedule_guard_holds_redis_s_time(cluster_buffer, redis_cluster_url):
    # Its value is when the window was scheduled; a flush tells a late one by it.
    env = {"REDIS_URL": redis_cluster_url, **skewed_clock("+1h")}
    result = run_python(RECORD, env=env)
    assert result.returncode == 0, result.stderr
    scheduled_at = float(cluster_buffer.get(keys.guard_key()))
    seconds, _ = cluster_buffer.execute_command("EVAL", "return redis.call('TIME')", 1, "x")
    assert int(seconds) - 5 <= scheduled_at <= int(seconds) + 1


FLUSH_WINDOW = """
import django
django.setup()
from impressions.flush import flush_pending
print(flush_pending(window={window!r}).impressions_applied)
"""


@pytest.mark.django_db(transaction=True)  # the child reads and writes the test database
def test_a_worker_an_hour_ahead_does_not_take_a_prompt_window_for_a_late_one(standalone_buffer):
    (post,) = make_posts(1)
    recorder.record_impressions("viewer", [post.id])
    scheduled_at = standalone_buffer.get(keys.guard_key()).decode()
    standalone_buffer.delete(keys.guard_key())  # gone, as a flush of no window deletes it
    window = f"{'0' * 16}~{keys.window_mark()}@{scheduled_at}"
    env = {**subprocess_env(connection), **skewed_clock("+1h")}
    result = run_python(FLUSH_WINDOW.format(window=window), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1"]
    assert "after its window was scheduled" not in result.stderr
