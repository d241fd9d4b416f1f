"""The SQS message format without a server: encode/decode, malformed bodies, delay arithmetic."""

import datetime
import json

import pytest
from django.utils import timezone

from queues.exceptions import MalformedMessage
from queues.execution import new_result
from queues.sqs import messages
from tests.queues import tasks as queue_tasks


def encoded(task, *args, **kwargs):
    result = new_result(task, "id-1", args, kwargs, "default")
    return messages.encode_message(result, task)


def test_a_message_round_trips_naming_the_task_by_path():
    due = timezone.now() + datetime.timedelta(minutes=5)
    task = queue_tasks.record_marker.using(run_after=due)
    envelope = messages.decode_message(encoded(task, "x", flag=True))
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
        (json.dumps({**GOOD, "task": None}), "'task' is missing or not a str"),
        (json.dumps({**GOOD, "args": {}}), "'args' is missing or not a list"),
        (json.dumps({**GOOD, "run_after": "tomorrow"}), "'run_after' is not an ISO 8601"),
        (json.dumps({**GOOD, "enqueued_at": "2030-01-01T00:00:00"}), "'enqueued_at' has no time"),
    ],
)
def test_malformed_bodies_say_what_is_wrong(body, reason):
    with pytest.raises(MalformedMessage, match=reason):
        messages.decode_message(body)


def test_delay_seconds_never_exceeds_the_cap():
    now = timezone.now()
    assert messages.delay_seconds(now + datetime.timedelta(hours=2), now) == 900
    assert messages.delay_seconds(now + datetime.timedelta(seconds=10.2), now) == 11
    assert messages.delay_seconds(now - datetime.timedelta(seconds=5), now) == 0
    assert messages.delay_seconds(None, now) == 0
