"""Settings an operator changes on a running system, with impressions waiting in Redis: each
change loses nothing, or says what to do (docs/impressions/settings.md)."""

import io
import logging
import time
from datetime import UTC, date, datetime

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import RequestFactory, override_settings

from casusult.models import Post
from impressions import keys, periods, viewers
from impressions.flush import (
    SHARDS_READ_TTL,
    flush_pending,
    new_flush_id,
    shards_holding,
    shards_in_use,
    take_snapshots,
)
from impressions.models import Flush
from impressions.recorder import record_impressions
from impressions.redis_client import get_flush_client
from impressions.rollup import roll_up
from impressions.schedule import flush_due
from impressions.tasks import flush_impressions_task
from tests.factories import make_posts

from .history_check import (
    daily_counts,
    history_sums,
    leaders_mismatches,
    open_days_misplaced,
    rollup_mismatches,
    rollup_state,
)
from .support import flush_redis, scheduled_flushes

pytestmark = pytest.mark.django_db(transaction=True)


def totals(ids):
    return dict(Post.objects.filter(id__in=ids).values_list("id", "impressions"))


@pytest.mark.parametrize("parts", [1, 2])
def test_shards_lowered_with_counts_pending_and_a_killed_flushs_snapshot(buffer, parts, caplog):
    """IMPRESSIONS_SHARDS lowered from 16 to 4 while the earlier deployment's counts wait in
    shards 4 to 15, some of them in the snapshot of a flush killed before it applied it (and
    while web processes of that deployment go on recording there): the new deployment's flush
    finds those shards and applies them, exactly once, and says so."""
    ids = [p.id for p in make_posts(3)]
    counted = sum(record_impressions(f"u:{viewer}", ids).counted for viewer in range(100))
    killed = new_flush_id()
    take_snapshots(buffer, killed, [10, 11, 12])  # a flush killed after its snapshots
    counted += sum(record_impressions(f"w:{viewer}", ids).counted for viewer in range(50))
    assert counted == 450

    caplog.set_level(logging.WARNING, logger="impressions.flush")
    with override_settings(IMPRESSIONS_SHARDS=4, IMPRESSIONS_FLUSH_PARTS=parts):
        for part in range(parts):
            flush_pending(part=part, parts=parts)
        assert sum(totals(ids).values()) == counted
        assert "above IMPRESSIONS_SHARDS=4" in caplog.text
        # Nothing is left in any shard; a second flush applies nothing more.
        assert not [k for k in buffer.scan_iter(match="{imp:*") if b"pending" in k]
        flush_pending()
    assert sum(totals(ids).values()) == counted
    assert history_sums(ids) == totals(ids)
    assert Flush.objects.get(id=killed).impressions_applied > 0
    # Back at 16 shards, nothing is applied twice.
    flush_pending()
    assert sum(totals(ids).values()) == counted


def test_shards_above_are_asked_at_most_every_ten_minutes(buffer):
    """Asking the 1,008 shards above IMPRESSIONS_SHARDS costs a flush 8-12 ms: a flush that
    found none notes it for SHARDS_READ_TTL, and the flushes meanwhile ask none. A process of a
    larger setting that records above after that (a web process of the deployment before) waits
    until the note expires; then the next flush finds and applies it. A flush of the larger
    setting (the deployment before's worker) raises the note, so the smaller one's flushes ask
    up to it."""
    ids = [p.id for p in make_posts(2)]
    flush_pending()
    note = keys.shards_read_key()
    assert int(buffer.get(note)) == 16 and 0 < buffer.ttl(note) <= SHARDS_READ_TTL
    with override_settings(IMPRESSIONS_SHARDS=64):
        viewer = next(f"u:{n}" for n in range(100) if keys.shard_of(f"u:{n}") >= 16)
        shard = keys.shard_of(viewer)
        assert record_impressions(viewer, ids).counted == 2
    flush_pending()
    assert sum(totals(ids).values()) == 0  # noted: not asked yet
    buffer.delete(note)  # as it expires
    flush_pending()
    assert sum(totals(ids).values()) == 2
    # Found: until the note expires, flushes ask up to that shard (its process may go on).
    assert int(buffer.get(note)) == shard + 1
    with override_settings(IMPRESSIONS_SHARDS=64):
        flush_pending()  # the larger setting's worker raises the note
        assert record_impressions(viewer, ids[:1]).counted == 0  # de-duplicated
        assert record_impressions(f"{viewer}-2", ids).counted == 2
    assert int(buffer.get(note)) == 64
    flush_pending()
    assert sum(totals(ids).values()) == 4


def test_the_shards_above_are_found_by_any_key_that_holds_counts(buffer):
    """A standalone server is asked for the keys of ~285 shards in one EXISTS, a cluster for
    those of one shard: either way each shard holding any such key is found, and no other,
    wherever it falls among those asked together."""
    held = {
        16: keys.pending_key(16),  # a version before the groups
        300: keys.pending_group_keys(300)[-1],
        301: keys.pending_days_key(301),
        870: keys.pending_group_keys(870)[0],
        1023: keys.snapshots_key(1023),
    }
    for key in held.values():
        if key.endswith(("days", "snapshots")):
            buffer.sadd(key, "x")
        else:
            buffer.hset(key, "1", 1)
    assert shards_holding(buffer, list(range(16, 1024))) == sorted(held)
    assert shards_holding(buffer, list(range(17, 300))) == []


def test_shards_raised_with_counts_pending(buffer):
    """IMPRESSIONS_SHARDS raised from 4 to 16 with counts pending: every count is flushed; the
    viewers that move to another shard leave their de-duplication sets behind, so their reloads
    within the window count once more (documented)."""
    ids = [p.id for p in make_posts(3)]
    with override_settings(IMPRESSIONS_SHARDS=4):
        counted = sum(record_impressions(f"u:{viewer}", ids).counted for viewer in range(100))
    again = sum(record_impressions(f"u:{viewer}", ids).counted for viewer in range(100))
    assert counted == 300 and 0 < again < 300
    flush_pending()
    assert sum(totals(ids).values()) == counted + again


def test_key_prefix_changed_the_old_prefixs_counts_are_flushed_by_the_command(standalone_buffer):
    """IMPRESSIONS_KEY_PREFIX changed with counts pending: the new deployment's flush cannot
    tell the old prefix's keys from another project's, so it leaves them; `flush_impressions
    --key-prefix OLD` applies them, once, beside what the new prefix recorded."""
    ids = [p.id for p in make_posts(3)]
    before = sum(record_impressions(f"u:{viewer}", ids).counted for viewer in range(40))
    with override_settings(IMPRESSIONS_KEY_PREFIX="imp2"):
        after = sum(record_impressions(f"u:{viewer}", ids).counted for viewer in range(10))
        call_command("flush_impressions", stdout=io.StringIO())
        assert sum(totals(ids).values()) == after == 30
        out = io.StringIO()
        call_command("flush_impressions", "--key-prefix", "imp", stdout=out)
        assert "120 impressions applied" in out.getvalue()
        assert sum(totals(ids).values()) == before + after == 150
        call_command("flush_impressions", "--key-prefix", "imp", stdout=out)
        assert sum(totals(ids).values()) == 150
        assert not [k for k in standalone_buffer.scan_iter(match="{imp:*") if b"pending" in k]
    with pytest.raises(CommandError, match="--key-prefix"):
        call_command("flush_impressions", "--key-prefix", "a{b}")


@pytest.mark.cluster
@override_settings(IMPRESSIONS_REDIS_TIMEOUT=10.0)  # exact counts, a loaded machine
def test_redis_url_changed_the_old_servers_counts_are_flushed_by_the_command(
    standalone_buffer, redis_cluster_url
):
    """IMPRESSIONS_REDIS_URL moved to another server (a standalone Redis to a cluster) with
    counts pending and a killed flush's snapshots on the old one: the new deployment's flush
    reads the new server only; `flush_impressions --redis-url OLD` applies them, once, beside
    what the new server recorded, whatever URL the settings name."""
    old_url = settings.IMPRESSIONS_REDIS_URL
    ids = [p.id for p in make_posts(3)]
    before = sum(record_impressions(f"u:{viewer}", ids).counted for viewer in range(40))
    every = shards_in_use(standalone_buffer)
    take_snapshots(standalone_buffer, new_flush_id(), every, every)  # a flush killed then
    before += sum(record_impressions(f"v:{viewer}", ids).counted for viewer in range(5))
    with override_settings(IMPRESSIONS_REDIS_URL=redis_cluster_url):
        flush_redis(get_flush_client())
        after = sum(record_impressions(f"u:{viewer}", ids).counted for viewer in range(10))
        call_command("flush_impressions", stdout=io.StringIO())
        assert sum(totals(ids).values()) == after == 30
        out = io.StringIO()
        call_command("flush_impressions", "--redis-url", old_url, stdout=out)
        assert f"{before} impressions applied" in out.getvalue()
        assert sum(totals(ids).values()) == before + after == 165
        call_command("flush_impressions", "--redis-url", old_url, stdout=out)
        assert "0 impressions applied" in out.getvalue().splitlines()[-1]
        assert sum(totals(ids).values()) == 165
        assert history_sums(ids) == totals(ids)
        with pytest.raises(CommandError, match="--redis-url"):
            call_command("flush_impressions", "--redis-url", "http://example.com")
        flush_redis(get_flush_client())


OLD_KEY, NEW_KEY = "old-secret-key-" + "a" * 40, "new-secret-key-" + "b" * 40


def visitor_request(cookie):
    request = RequestFactory().get("/", REMOTE_ADDR="203.0.113.9", HTTP_USER_AGENT="Firefox")
    request.COOKIES["visitor"] = cookie
    return request


def test_secret_key_rotated_with_fallbacks_keeps_visitors_and_re_signs_their_cookies(
    standalone_buffer,
):
    """SECRET_KEY rotated with the old key in SECRET_KEY_FALLBACKS: a returning visitor is the
    same viewer (its reload in the window counts nothing more), and its cookie is signed again
    with the new key, so that dropping the fallback later does not make it a new viewer."""
    ids = [p.id for p in make_posts(3)]
    with override_settings(SECRET_KEY=OLD_KEY):
        cookie = viewers.make_visitor_cookie("20200101", "0" * 32)  # a visitor of long ago
        viewer = viewers.identify(visitor_request(cookie))
        assert viewer.key.startswith("v:") and viewer.new_cookie is None
        assert record_impressions(viewer.key, ids).counted == 3
    with override_settings(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[OLD_KEY]):
        rotated = viewers.identify(visitor_request(cookie))
        assert rotated.key == viewer.key
        assert record_impressions(rotated.key, ids).counted == 0
        assert rotated.new_cookie is not None
        # Signed with the new key, the same visitor.
        assert viewers.identify(visitor_request(rotated.new_cookie)).new_cookie is None
    with override_settings(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[]):
        assert viewers.identify(visitor_request(rotated.new_cookie)).key == viewer.key


def test_secret_key_rotated_without_fallbacks_makes_returning_visitors_new_ones(
    standalone_buffer,
):
    """Without the fallback, a returning visitor's cookie is no cookie: a new viewer (its
    reload within the window counts once more) given a new cookie, from its address's budget."""
    ids = [p.id for p in make_posts(3)]
    with override_settings(SECRET_KEY=OLD_KEY):
        cookie = viewers.make_visitor_cookie("20200101", "0" * 32)
        viewer = viewers.identify(visitor_request(cookie))
        assert record_impressions(viewer.key, ids).counted == 3
    with override_settings(SECRET_KEY=NEW_KEY):
        rotated = viewers.identify(visitor_request(cookie))
        assert rotated.key.startswith("a:") and rotated.new_cookie is not None
        assert record_impressions(rotated.key, ids).counted == 3


@pytest.mark.parametrize("new_delay", [30, 3600])
def test_flush_delay_changed_with_a_flush_scheduled(standalone_buffer, new_delay):
    """IMPRESSIONS_FLUSH_DELAY changed while a window's flush is scheduled: that flush runs when
    it was enqueued for, and the dashboard's "next flush" says so, not the guard's time plus the
    new delay (which read "overdue" for a flush due in four minutes, or "in an hour" for one due
    in five)."""
    ids = [p.id for p in make_posts(2)]
    record_impressions("u:1", ids)
    (scheduled,) = scheduled_flushes()
    with override_settings(IMPRESSIONS_FLUSH_DELAY=new_delay):
        due = flush_due()
        assert abs((due - scheduled.task.run_after).total_seconds()) < 2
        assert record_impressions("u:2", ids).scheduled is False  # the window's flush takes them
    flush_impressions_task.call(**scheduled.kwargs)
    assert sum(totals(ids).values()) == 4


def test_dedup_window_shortened_and_lengthened_mid_window(standalone_buffer):
    """Each record call prunes by the window it is given: shortened, a reload counts once the
    new window has passed; lengthened, the views after the change hold for the new one."""
    ids = [p.id for p in make_posts(2)]
    t0 = 1_800_000_000
    assert record_impressions("u:1", ids, now=t0).counted == 2
    with override_settings(IMPRESSIONS_DEDUP_WINDOW=60):
        assert record_impressions("u:1", ids, now=t0 + 59).counted == 0
        assert record_impressions("u:1", ids, now=t0 + 100).counted == 2
    with override_settings(IMPRESSIONS_DEDUP_WINDOW=3600):
        assert record_impressions("u:1", ids, now=t0 + 1000).counted == 0
        assert record_impressions("u:1", ids, now=t0 + 3701).counted == 2
    flush_pending()
    assert sum(totals(ids).values()) == 6


def test_flush_parts_changed_between_a_windows_enqueue_and_its_run(standalone_buffer):
    """IMPRESSIONS_FLUSH_PARTS changed while a window's parts wait in the queue: they run as
    they were split, the next window as the new setting says; every count once."""
    ids = [p.id for p in make_posts(3)]
    with override_settings(IMPRESSIONS_FLUSH_PARTS=4):
        counted = sum(record_impressions(f"u:{viewer}", ids).counted for viewer in range(60))
    old_window = scheduled_flushes()
    assert [r.kwargs["parts"] for r in old_window] == [4, 4, 4, 4]
    with override_settings(IMPRESSIONS_FLUSH_PARTS=2):
        flush_impressions_task.call(**old_window[0].kwargs)  # opens the next window
        counted += sum(record_impressions(f"w:{viewer}", ids).counted for viewer in range(60))
        new_window = scheduled_flushes()[4:]
        assert [r.kwargs["parts"] for r in new_window] == [2, 2]
        for result in [*old_window[1:], *new_window]:
            flush_impressions_task.call(**result.kwargs)
    assert sum(totals(ids).values()) == counted == 360
    assert history_sums(ids) == totals(ids)


def test_task_backend_switched_with_a_flush_scheduled_on_the_old_one(standalone_buffer):
    """A deploy moves the flush to another queue (RQ to SQS, IMPRESSIONS_TASK_BACKEND or
    _QUEUE) while a window's flush waits on the old one, which no worker serves any more: the
    new deployment schedules nothing while the guard stands (its counts wait), then, once the
    guard lapses (delay + 60 s after it was taken), the next view schedules a flush on the new
    queue, which takes every count. The old job, run later after all, applies nothing twice
    and leaves the new window's guard alone."""
    ids = [p.id for p in make_posts(3)]
    counted = sum(record_impressions(f"u:{viewer}", ids).counted for viewer in range(30))
    (old_job,) = scheduled_flushes()  # on the old queue, never run there
    assert not record_impressions("u:new-1", ids).scheduled  # the guard stands
    counted += 3
    # delay + 60 s later: the guard has lapsed, and every key that lapses no later with it
    # (the shards' flags, the de-duplication sets).
    lapse = standalone_buffer.pttl(keys.guard_key())
    assert lapse > 0
    for key in standalone_buffer.scan_iter():
        if 0 < standalone_buffer.pttl(key) <= lapse:
            standalone_buffer.pexpire(key, 1)
    time.sleep(0.01)
    assert record_impressions("u:new-2", ids).scheduled  # on the new queue
    counted += 3
    (new_job,) = scheduled_flushes()[1:]
    flush_impressions_task.call(**new_job.kwargs)
    assert sum(totals(ids).values()) == counted == 96
    assert record_impressions("u:new-3", ids).scheduled  # the next window
    flush_impressions_task.call(**old_job.kwargs)  # late, somewhere: takes what is pending
    assert standalone_buffer.exists(keys.guard_key())  # the next window's guard stays
    flush_pending()
    assert sum(totals(ids).values()) == counted + 3
    assert history_sums(ids) == totals(ids)


def test_time_zone_changed_with_history_present(standalone_buffer):
    """TIME_ZONE moved east, then west, with days filed, today's open rows and counts pending
    in the old zone's days: each count stays on the day it was recorded on (a pending counter
    carries its day), a day the new zone has ended is rolled up, counts late for a day rolled up
    go to its daily, week and month rows; every sum agrees and nothing is lost."""
    ids = [p.id for p in make_posts(3)]
    moment = datetime(2026, 12, 6, 23, 0, tzinfo=UTC).timestamp()  # Dec 6 in UTC
    counted = sum(record_impressions(f"u:{v}", ids, now=moment).counted for v in range(10))
    flush_pending()
    pending = sum(record_impressions(f"p:{v}", ids, now=moment).counted for v in range(5))
    # East: Dec 7 there (13:00); the UTC day's open rows have ended, its pending counts too.
    with override_settings(TIME_ZONE="Pacific/Kiritimati"):
        assert periods.day_of(datetime.fromtimestamp(moment + 60, UTC)) == date(2026, 12, 7)
        counted += sum(record_impressions(f"e:{v}", ids, now=moment + 60).counted for v in range(7))
        flush_pending()
        roll_up(today=date(2026, 12, 7))
        assert rollup_state().is_rolled(date(2026, 12, 6), ids[0])
    # West: Dec 6 again (12:02), a day rolled up: late counts.
    with override_settings(TIME_ZONE="Pacific/Pago_Pago"):
        assert periods.day_of(datetime.fromtimestamp(moment + 120, UTC)) == date(2026, 12, 6)
        counted += sum(
            record_impressions(f"w:{v}", ids, now=moment + 120).counted for v in range(4)
        )
        flush_pending()
        roll_up(today=date(2026, 12, 6))
    counted += pending
    assert sum(totals(ids).values()) == counted == 3 * (10 + 5 + 7 + 4)
    assert history_sums(ids) == totals(ids)
    assert {day for _, day in daily_counts(ids)} == {date(2026, 12, 6), date(2026, 12, 7)}
    assert sum(c for (_, day), c in daily_counts(ids).items() if day == date(2026, 12, 7)) == 21
    assert open_days_misplaced() == []
    assert rollup_mismatches() == []
    assert leaders_mismatches() == []


class ExpiresAfterRead:
    """The flush's client, the note of the shards read expiring just after the flush read it."""

    def __init__(self, client):
        self.client = client

    @property
    def __class__(self):
        # What the client it wraps is, to isinstance() (redis_client.is_cluster): a standalone
        # server's shards are asked in packed EXISTS through its connection pool, a cluster's
        # one a shard, as ever.
        return type(self.client)

    def __getattr__(self, name):
        return getattr(self.client, name)

    def get(self, key):
        value = self.client.get(key)
        self.client.delete(key)
        return value


def test_a_note_that_expires_while_a_flush_raises_it_is_not_kept_for_ever(buffer):
    """A flush of a larger IMPRESSIONS_SHARDS raises the note of the shards read; the note
    expiring between its read and that raise must not come back without a time to live (then
    no flush would ask the shards above it again)."""
    flush_pending()
    note = keys.shards_read_key()
    assert int(buffer.get(note)) == 16
    with override_settings(IMPRESSIONS_SHARDS=32):
        assert shards_in_use(ExpiresAfterRead(buffer)) == list(range(32))
    assert buffer.ttl(note) != -1  # gone (asked again next time) or expiring
