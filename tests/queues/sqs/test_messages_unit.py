"""The SQS message format without a server: encode/decode, malformed bodies, delay arithmetic."""

import datetime
import json

import pytest
from django.utils import timezone

from queues.bounds import MAX_NESTING_DEPTH
from queues.exceptions import MalformedMessage
from queues.execution import new_result
from queues.sqs import messages
from tests.queues import tasks as queue_tasks

MAX_ATTEMPTS = 3


def nested(depth):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


def decode(body):
    return messages.decode_message(body, MAX_ATTEMPTS)


def encoded(task, *args, **kwargs):
    result = new_result(task, "id-1", args, kwargs, "default")
    return messages.encode_message(result, task)


def test_a_message_round_trips_naming_the_task_by_path():
    due = timezone.now() + datetime.timedelta(minutes=5)
    task = queue_tasks.record_marker.using(run_after=due)
    envelope = decode(encoded(task, "x", flag=True))
    assert envelope["v"] == messages.MESSAGE_VERSION
    assert envelope["id"] == "id-1"
    assert envelope["task"] == "tests.queues.tasks.record_marker"
    assert (envelope["args"], envelope["kwargs"]) == (["x"], {"flag": True})
    assert envelope["run_after"] == due
    assert timezone.is_aware(envelope["enqueued_at"])


def test_the_body_is_compact_json_data_only():
    body = encoded(queue_tasks.record_marker, "x")
    assert json.loads(body)["run_after"] is None
    assert ", " not in body and ": " not in body


GOOD = {"v": 1, "id": "x", "task": "tests.queues.tasks.record_marker", "args": [], "kwargs": {}}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("this is not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({**GOOD, "v": 2}), "unknown message version 2"),
        (json.dumps({**GOOD, "task": None}), "'task' is not a string"),
        (json.dumps({**GOOD, "task": "x" * 201}), "'task' is not a string of at most 200"),
        (json.dumps({**GOOD, "task": "os"}), "'task' 'os' is not a dotted path"),
        (json.dumps({**GOOD, "id": "a\nb"}), r"'id' 'a\?b' is not 1 to 128"),
        (json.dumps({**GOOD, "id": "x" * 129}), "'id'"),
        (json.dumps({**GOOD, "args": {}}), "'args' is not a list"),
        (json.dumps({**GOOD, "kwargs": []}), "'kwargs' is not an object"),
        (json.dumps({**GOOD, "args": nested(MAX_NESTING_DEPTH + 1)}), "nest deeper"),
        (json.dumps({**GOOD, "args": ["x" * 300_000]}), "bytes of JSON, past the bound"),
        (json.dumps({**GOOD, "backend": ["default"]}), "'backend' is not a string"),
        ("[" * 100_000 + "]" * 100_000, "nests too deep"),
        ("x" * (1024 * 1024 + 1), "not text of at most"),
        (
            json.dumps({**GOOD, "run_after": "9999-12-31T23:59:59-14:00"}),
            "'run_after' is not an ISO",
        ),
        (json.dumps({**GOOD, "run_after": "tomorrow"}), "'run_after' is not an ISO 8601"),
        (json.dumps({**GOOD, "enqueued_at": "2030-01-01T00:00:00"}), "'enqueued_at' has no time"),
    ],
)
def test_malformed_bodies_say_what_is_wrong(body, reason):
    with pytest.raises(MalformedMessage, match=reason):
        decode(body)


def test_delay_seconds_never_exceeds_the_cap():
    now = timezone.now()
    assert messages.delay_seconds(now + datetime.timedelta(hours=2), now) == 900
    assert messages.delay_seconds(now + datetime.timedelta(seconds=10.2), now) == 11
    assert messages.delay_seconds(now - datetime.timedelta(seconds=5), now) == 0
    assert messages.delay_seconds(None, now) == 0


def test_a_body_sent_again_keeps_what_is_left_of_its_run_after():
    later = queue_tasks.record_marker.using(run_after=timezone.now() + datetime.timedelta(hours=2))
    soon = queue_tasks.record_marker.using(
        run_after=timezone.now() + datetime.timedelta(seconds=30)
    )
    assert messages.remaining_delay(encoded(later, "x")) == 900
    # Received, a body SQS held for its whole delay is due, whatever this host's clock says.
    assert messages.remaining_delay(encoded(soon, "x")) == 0
    # A leg of a longer run_after (enqueued an hour ago) keeps what is left, by this host's clock.
    resent = json.loads(encoded(soon, "x"))
    resent["enqueued_at"] = (timezone.now() - datetime.timedelta(hours=1)).isoformat()
    assert 29 <= messages.remaining_delay(json.dumps(resent)) <= 30
    assert messages.remaining_delay(encoded(queue_tasks.record_marker, "x")) == 0
    for unreadable in ("not json", "[1]", '{"run_after": "yesterday"}', '{"run_after": 5}'):
        assert (
            messages.remaining_delay(unreadable) == 0
        )  # the worker that receives it sets it aside


def test_a_first_message_is_attempt_one_with_no_earlier_workers():
    envelope = decode(encoded(queue_tasks.record_marker, "x"))
    assert (envelope["attempt"], envelope["worker_ids"]) == (1, [])
    # Messages sent before retries existed carry neither field.
    old = json.loads(encoded(queue_tasks.record_marker, "x"))
    del old["attempt"]
    assert decode(json.dumps(old))["attempt"] == 1


def test_the_next_attempt_counts_on_and_names_the_workers_before_it():
    first = encoded(queue_tasks.record_marker, "x")
    second = messages.next_attempt_body(first, decode(first), "host:1:sqs")
    third = decode(messages.next_attempt_body(second, decode(second), "host:2:sqs"))
    assert (third["attempt"], third["worker_ids"]) == (3, ["host:1:sqs", "host:2:sqs"])
    assert (third["id"], third["args"]) == ("id-1", ["x"])


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"attempt": 0}, "attempt"),
        ({"attempt": "2"}, "attempt"),
        ({"attempt": True}, "attempt"),
        ({"attempt": 10**13}, "'attempt' 10000000000000 is not a whole number from 1 to 103"),
        ({"attempt": 104}, "from 1 to 103"),
        ({"worker_ids": "w"}, "worker_ids"),
        ({"worker_ids": [1]}, "worker_ids"),
        ({"worker_ids": ["w"] * 104}, "'worker_ids' is not a list of at most 103"),
        ({"worker_ids": ["w" * 301]}, "strings of at most 300"),
    ],
)
def test_bad_attempt_fields_are_malformed(fields, error):
    body = {**json.loads(encoded(queue_tasks.record_marker, "x")), **fields}
    with pytest.raises(MalformedMessage, match=error):
        decode(json.dumps(body))


def test_worker_ids_always_match_the_attempt():
    # TaskContext.attempt is len(worker_ids) + 1 while the task runs: keep the two in step.
    body = {**json.loads(encoded(queue_tasks.record_marker, "x")), "attempt": 3}
    assert decode(json.dumps(body))["worker_ids"] == ["unknown", "unknown"]
    body["worker_ids"] = ["a", "b", "c", "d"]
    assert decode(json.dumps(body))["worker_ids"] == ["a", "b"]


def test_redrives_past_max_attempts_stay_within_bounds():
    # sqs_redrive moves a message that used its MAX_ATTEMPTS back; each run adds one attempt.
    body = {**json.loads(encoded(queue_tasks.record_marker, "x")), "attempt": MAX_ATTEMPTS + 100}
    body["worker_ids"] = [f"host:{n}:sqs" for n in range(MAX_ATTEMPTS + 99)]
    assert len(decode(json.dumps(body))["worker_ids"]) == MAX_ATTEMPTS + 99


# 1 November 2026 in New York: 01:00-02:00 comes twice, first in EDT (UTC-4), then in EST (UTC-5).
FIRST_0158 = datetime.datetime(2026, 11, 1, 1, 58)  # 05:58 UTC
SECOND_0103 = datetime.datetime(2026, 11, 1, 1, 3, fold=1)  # 06:03 UTC: 5 minutes later
TWO_0203 = datetime.datetime(2026, 11, 1, 2, 3)  # 07:03 UTC: 65 minutes later


def test_naive_times_across_a_repeated_hour_are_real_seconds_apart(settings):
    """USE_TZ = False: a naive time is TIME_ZONE's wall clock, its fold telling which of a repeated
    hour's two it is. The delay is the real time between two of them, not their wall clocks'
    difference: 01:58 EDT to 01:03 EST was 0 s (a flush due 5 minutes later ran at once), and to
    02:03 EST 300 s (the message came back 65 minutes later, not 5)."""
    settings.USE_TZ, settings.TIME_ZONE = False, "America/New_York"
    assert messages.delay_seconds(SECOND_0103, FIRST_0158) == 300
    assert messages.delay_seconds(TWO_0203, FIRST_0158) == 900  # 3,900 s: the cap
    assert messages.delay_seconds(FIRST_0158, SECOND_0103) == 0  # 5 minutes ago
