"""The public API and the client's set-up, without services: what a site reaches, and how."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import redis.connection
from django.test import override_settings
from django.utils import timezone

import impressions
from impressions import api, keys, periods, recorder
from impressions.recorder import Today
from impressions.redis_client import database_of, is_cluster_mode


def test_the_package_forwards_its_public_names_to_the_api():
    for name in impressions.__all__:
        assert getattr(impressions, name) is getattr(api, name)
    assert set(impressions.__all__) == set(api.__all__)


def test_the_package_hides_what_is_not_public():
    with pytest.raises(AttributeError, match="record_impressions"):
        impressions.record_impressions  # noqa: B018 (the attribute access is the test)


@pytest.mark.parametrize(
    "url",
    [
        "rediss://casusult-abc123.serverless.use1.cache.amazonaws.com:6379",
        "rediss://CASUSULT.clustercfg.euw1.cache.amazonaws.com.:6379",
    ],
)
def test_known_cluster_endpoints_pick_the_cluster_client_without_a_round_trip(url):
    # The hosts do not resolve here: any network use would raise instead of answering.
    assert is_cluster_mode(url, {"socket_connect_timeout": 0.05}) is True


@pytest.mark.parametrize(
    ("url", "database"),
    [
        ("redis://h:6379/3", 3),
        ("redis://h:6379/0?db=3", 3),  # the query wins, as in redis-py
        ("redis://h:6379/3?db=0", 0),
        ("redis://h:6379?db=5", 5),
        ("redis://h:6379/4?db=", 4),  # a blank db= is no db=
        ("redis://h:6379", 0),
        ("unix:///run/redis.sock?db=2", 2),  # a socket's path is no database
        ("unix:///run/redis.sock", 0),
    ],
)
def test_the_database_judged_is_the_one_redis_py_selects(url, database):
    # The cluster-mode refusal of a database number judges the one the client would select.
    assert database_of(url) == database
    assert redis.connection.parse_url(url).get("db", 0) == database


def test_record_keys_are_the_keys_the_key_functions_name():
    viewer = "u:7"
    shard = keys.shard_of(viewer)
    each = [
        keys.seen_key(shard, viewer),
        keys.pending_key(shard),
        keys.armed_key(shard),
        keys.lost_key(shard),
        keys.pending_days_key(shard),
        keys.totals_key(shard),
        keys.snapshots_key(shard),
        keys.rate_key(shard, viewer, 490_000),
        *keys.pending_group_keys(shard),
    ]
    assert keys.pending_group_keys(shard)[0] == keys.pending_key(shard) + ":0"
    assert keys.record_keys(shard, viewer, 490_000, with_guard=False) == each
    guard = [keys.guard_key(), keys.scheduled_window_key()]
    assert keys.record_keys(shard, viewer, 490_000, with_guard=True) == [*each, *guard]
    with override_settings(IMPRESSIONS_KEY_PREFIX="other"):
        assert keys.record_keys(shard, viewer, 1, with_guard=False)[1] == keys.pending_key(shard)
        assert keys.pending_key(shard).startswith("{other:")


@override_settings(TIME_ZONE="Asia/Kolkata")
def test_today_changes_at_the_time_zones_midnight_and_not_before():
    zone = ZoneInfo("Asia/Kolkata")
    midnight = datetime(2026, 11, 19, tzinfo=zone).timestamp()
    clock = [midnight - 0.001]
    today = Today(clock=lambda: clock[0])
    assert today.text() == "20261118"
    clock[0] = midnight - 3600
    assert today.text() == "20261118"  # from the kept span
    clock[0] = midnight
    assert today.text() == "20261119"
    clock[0] = midnight + 86399.999
    assert today.text() == "20261119"
    clock[0] = midnight + 86400
    assert today.text() == "20261120"


def test_today_follows_a_change_of_time_zone():
    # 25 hours apart: at any moment their dates differ, so a kept span would show.
    texts = []
    for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago", "Pacific/Kiritimati"):
        with override_settings(TIME_ZONE=zone):
            texts.append(recorder.today.text())
            assert texts[-1] == keys.day_text(periods.day_of(timezone.now()))
    assert texts[0] != texts[1]


def test_losses_log_a_line_every_ten_seconds_at_most_for_all_of_them(monkeypatch, caplog):
    now = [1000.0]
    monkeypatch.setattr(recorder, "lost", recorder.LossCounter(clock=lambda: now[0]))
    down = redis.ConnectionError("Connection refused")
    for _ in range(1000):  # an outage at 1,000 requests a second
        recorder.record_loss(3, "viewer u:1", down)
        now[0] += 0.001
    now[0] += 9.5
    recorder.record_loss(2, "viewer u:2", down)
    lines = [r for r in caplog.records if r.name == "impressions.recorder"]
    assert [(line.lost, line.calls) for line in lines] == [(3, 1), (3 * 999 + 2, 1000)]
    assert "2999 in 1000 calls since the last such line" in lines[1].getMessage()
    assert recorder.lost.impressions == 3002


def test_a_loss_for_another_reason_logs_at_once(monkeypatch, caplog):
    now = [1000.0]
    monkeypatch.setattr(recorder, "lost", recorder.LossCounter(clock=lambda: now[0]))
    recorder.record_loss(3, "viewer u:1", redis.ConnectionError("Connection refused"))
    now[0] += 1
    recorder.record_loss(3, "viewer u:2", redis.ConnectionError("Connection refused"))
    recorder.record_loss(4, "viewer u:3", redis.ResponseError("MOVED 3999 127.0.0.1:7001"))
    lines = [r for r in caplog.records if r.name == "impressions.recorder"]
    # The second ConnectionError is that reason's: not added to the MOVED line.
    assert [(line.lost, line.calls, line.error) for line in lines] == [
        (3, 1, "ConnectionError"),
        (4, 1, "ResponseError"),
    ]


def test_losses_for_reasons_that_alternate_log_a_line_each_every_ten_seconds(monkeypatch, caplog):
    # A Redis failing over: some calls time out, others find the connection refused.
    now = [1000.0]
    monkeypatch.setattr(recorder, "lost", recorder.LossCounter(clock=lambda: now[0]))
    refused, slow = redis.ConnectionError("Connection refused"), redis.TimeoutError("Timeout")
    for call in range(1000):
        recorder.record_loss(1, f"viewer u:{call}", refused if call % 2 else slow)
        now[0] += 0.001
    now[0] += 10
    recorder.record_loss(1, "viewer u:last", refused)
    lines = [r for r in caplog.records if r.name == "impressions.recorder"]
    assert [(line.error, line.calls) for line in lines] == [
        ("TimeoutError", 1),
        ("ConnectionError", 1),
        ("ConnectionError", 500),  # its 499 since its first line, and this one
    ]
