"""A project with USE_TZ = False (naive datetimes, TIME_ZONE's wall clock): recording, the flush,
a recovered snapshot, the roll-up, the history, the dashboard and "Flush now" work as with USE_TZ
= True, on the days of TIME_ZONE."""

import re
from datetime import UTC, date, datetime, timedelta

import pytest
from django.contrib.messages import get_messages
from django.test import override_settings
from django.utils import timezone

import impressions
from casusult.models import Post
from impressions import flush as flush_module
from impressions import flush_now, rollup
from impressions.flush import flush_pending
from impressions.models import Flush
from impressions.recorder import record_impressions
from tests.factories import make_posts

pytestmark = pytest.mark.django_db

# 23:30 on Saturday 5 December 2026 in Tokyo, 14:30 in UTC.
LATE_IN_TOKYO = datetime(2026, 12, 5, 14, 30, tzinfo=UTC)


@pytest.fixture
def naive_tokyo():
    with override_settings(USE_TZ=False, TIME_ZONE="Asia/Tokyo", IMPRESSIONS_HISTORY_DAYS=0):
        yield


def test_the_flush_counts_on_the_time_zone_days(standalone_buffer, naive_tokyo):
    post = make_posts(1)[0]
    record_impressions("u:1", [post.id], now=LATE_IN_TOKYO)
    record_impressions("u:2", [post.id], now=LATE_IN_TOKYO + timedelta(hours=1))  # 00:30, the 6th
    report = flush_pending()
    assert report.impressions_applied == 2
    rollup.roll_up(pace=0)
    assert Post.objects.get(pk=post.pk).impressions == 2
    assert impressions.history([post.id], date(2026, 12, 4), date(2026, 12, 7)) == {
        post.id: {date(2026, 12, 5): 1, date(2026, 12, 6): 1}
    }
    assert impressions.top_posts(date(2026, 12, 5), date(2026, 12, 5)) == [(post.id, 1)]
    flush = Flush.objects.get()
    assert timezone.is_naive(flush.started_at)
    # The ledger's time is Tokyo's wall clock, as every naive datetime of the project.
    assert abs(flush.started_at - datetime.now()) < timedelta(minutes=1)


def test_a_stopped_flush_is_recovered_with_its_start_time(
    standalone_buffer, naive_tokyo, monkeypatch
):
    post = make_posts(1)[0]
    record_impressions("u:1", [post.id])

    class Stopped(Exception):
        pass

    def stop(name):
        if name == "after-snapshot":
            raise Stopped

    monkeypatch.setattr(flush_module, "checkpoint", stop)
    with pytest.raises(Stopped):
        flush_pending()
    monkeypatch.undo()
    assert not Flush.objects.exists()  # stopped before its ledger row
    report = flush_pending()
    assert len(report.recovered) == 1
    recovered = Flush.objects.get(pk=report.recovered[0])
    assert recovered.outcome == Flush.Outcome.APPLIED
    # The id's UTC second, as Tokyo's wall clock.
    assert abs(recovered.started_at - datetime.now()) < timedelta(minutes=1)
    assert Post.objects.get(pk=post.pk).impressions == 1


def test_the_dashboard_and_flush_now(superuser_client, standalone_buffer, naive_tokyo, monkeypatch):
    monkeypatch.setattr(flush_now, "WAIT_IN_REQUEST", 0)  # the Dummy backend never runs it
    posts = make_posts(2)
    record_impressions("u:1", [p.id for p in posts])
    flush_pending(keep_schedule=True)
    record_impressions("u:2", [posts[0].id])
    html = superuser_client.get("/admin/impressions/dashboard/").content.decode()
    assert re.search(r'id="next-flush">at [\d-]+ [\d:]+, <span>in (4|5) min</span>', html)
    assert re.search(r"applied,\s+2 impressions to 2 posts in \d+ ms;\s+\d+ s ago", html)
    ledger = superuser_client.get("/admin/impressions/flush/")
    assert ledger.status_code == 200
    started = f"{Flush.objects.get().started_at:%Y-%m-%d %H:%M:%S}"
    assert started in ledger.content.decode()

    response = superuser_client.post("/admin/impressions/flush/flush-now/", {"next": "/admin/"})
    waiting_url = response["Location"]
    assert superuser_client.get(waiting_url).status_code == 200
    flush_pending(keep_schedule=True)  # what the worker does
    done = superuser_client.get(waiting_url)
    assert done.status_code == 302 and done["Location"] == "/admin/"
    message = str(next(iter(get_messages(done.wsgi_request))))
    assert "1 impression applied to 1 post in " in message
