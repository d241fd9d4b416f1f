"""VisibilityHeartbeat on moto: renews while a task runs, stops after, and stops at JOB_TIMEOUT."""

import logging
import threading
import time

import pytest
from django.tasks import task_backends

from queues import liveness
from queues.sqs.backend import MAX_HIDDEN
from queues.sqs.heartbeat import CAP_MARGIN, VisibilityHeartbeat
from tests.queues import tasks as queue_tasks
from tests.queues.sqs.support import sqs_worker

pytestmark = pytest.mark.sqs


def receive(sqs, count):
    """Send `count` messages and receive them all (the queue hides them 1 s)."""
    for n in range(count):
        sqs.client.send_message(QueueUrl=sqs.url, MessageBody=f"message {n}")
    received = []
    deadline = time.monotonic() + 10
    while len(received) < count and time.monotonic() < deadline:
        answer = sqs.client.receive_message(
            QueueUrl=sqs.url, MaxNumberOfMessages=count - len(received), WaitTimeSeconds=1
        )
        received += answer.get("Messages", [])
    assert len(received) == count
    return sorted(received, key=lambda message: message["Body"])


def received_again(sqs, within):
    """The id of the first message another consumer receives within `within` seconds, or None."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        answer = sqs.client.receive_message(QueueUrl=sqs.url, WaitTimeSeconds=0)
        if messages := answer.get("Messages"):
            return messages[0]["MessageId"]
        time.sleep(0.1)
    return None


def test_renews_the_running_task_message_past_the_queue_timeout(sqs):
    [message] = receive(sqs, 1)
    heartbeat = VisibilityHeartbeat(task_backends["default"], [message], 2, limit=60)
    with heartbeat:
        heartbeat.started(message)
        assert received_again(sqs, within=3) is None  # unrenewed: visible after 2 s
        assert heartbeat.holds(message)
        heartbeat.let_go(message)
    assert not heartbeat.thread.is_alive()
    assert received_again(sqs, within=5) == message["MessageId"]  # no renewal after


def test_a_message_let_go_is_no_longer_renewed_while_the_others_are(sqs):
    first, second = receive(sqs, 2)
    heartbeat = VisibilityHeartbeat(task_backends["default"], [first, second], 2, limit=60)
    with heartbeat:
        heartbeat.started(second)
        heartbeat.let_go(first)
        assert received_again(sqs, within=5) == first["MessageId"]
        assert received_again(sqs, within=2.5) is None  # the second is still held
        heartbeat.let_go(second)
    assert received_again(sqs, within=5) == second["MessageId"]


def test_a_running_task_is_kept_hidden_until_job_timeout_and_the_grace_only(
    sqs, monkeypatch, caplog
):
    monkeypatch.setattr(liveness, "STALL_GRACE", 1)
    [message] = receive(sqs, 1)
    limit = liveness.stall_limit(1)  # JOB_TIMEOUT 1 s: given up after 2 s
    heartbeat = VisibilityHeartbeat(task_backends["default"], [message], 1, limit=limit)
    with caplog.at_level(logging.ERROR, logger="queues.worker"), heartbeat:
        heartbeat.started(message)
        started = time.monotonic()
        again = received_again(sqs, within=8)
        seen_after = time.monotonic() - started
        assert not heartbeat.holds(message)
    assert again == message["MessageId"]
    assert seen_after >= limit
    assert "past JOB_TIMEOUT" in caplog.text


def test_near_sqs_s_12_hours_a_renewal_asks_for_what_is_left_and_waiting_ones_go_back(sqs):
    # SQS hides a message 12 h at most from its receive and refuses a renewal past that: the
    # running task's message is renewed for what is left, the waiting one is handed back.
    running, waiting = receive(sqs, 2)
    heartbeat = VisibilityHeartbeat(task_backends["default"], [running, waiting], 30, limit=60)
    # As if received 12 h ago, less 5 s: 5, not 1, so that a loaded machine's pause before the
    # receive below does not let the running message's renewal lapse first (CI saw message 0).
    heartbeat.received -= MAX_HIDDEN - CAP_MARGIN - 5
    heartbeat.started(running)
    with heartbeat:
        assert not heartbeat.holds(waiting)
        answer = sqs.client.receive_message(QueueUrl=sqs.url, MessageSystemAttributeNames=["All"])
        [again] = answer["Messages"]  # at once: sent again, with 12 h of its own
        assert again["Body"] == waiting["Body"]
        assert again["Attributes"]["ApproximateReceiveCount"] == "1"
        sqs.client.delete_message(QueueUrl=sqs.url, ReceiptHandle=again["ReceiptHandle"])
        assert received_again(sqs, within=12) == running["MessageId"]  # renewed 5 s, not 30
        heartbeat.let_go(running)


def test_a_task_that_could_not_finish_within_sqs_s_12_hours_is_handed_back_not_started(sqs):
    queue_tasks.record_marker.enqueue("late")
    [message] = receive_task(sqs)
    worker = sqs_worker()
    worker.prepare()
    with worker.hold([message]) as heartbeat:  # JOB_TIMEOUT 600 s: held 660 s from its start
        heartbeat.received -= MAX_HIDDEN - CAP_MARGIN - 600  # 600 s left
        worker.handle_batch([message], heartbeat)
    assert queue_tasks.markers() == []
    [again] = receive_task(sqs)
    assert again["Body"] == message["Body"] and again["MessageId"] != message["MessageId"]


def test_sqs_s_12_hours_are_counted_from_when_the_receive_was_sent(sqs):
    # SQS starts a message's 12 h somewhere inside the long poll that returns it: counted from
    # the poll's answer, the cap could be overshot by up to WAIT_TIME_SECONDS.
    worker = sqs_worker()
    worker.prepare()
    sender = threading.Timer(0.5, queue_tasks.record_marker.enqueue, ["during the poll"])
    sent = time.monotonic()
    sender.start()
    messages = worker.receive()  # a long poll of WAIT_TIME_SECONDS (1 s), answered at ~0.5 s
    answered = time.monotonic()
    assert len(messages) == 1 and answered - sent >= 0.5
    with worker.hold(messages) as heartbeat:
        assert sent <= heartbeat.received < sent + 0.25
        heartbeat.release(messages)


def receive_task(sqs):
    answer = sqs.client.receive_message(QueueUrl=sqs.url, WaitTimeSeconds=1)
    return answer.get("Messages", [])


def crash_while_running(heartbeat, message):
    with heartbeat:
        heartbeat.started(message)
        raise RuntimeError("the worker is forced out mid-batch")


def test_leaving_on_an_error_gives_the_held_messages_back_at_once(sqs):
    messages = receive(sqs, 2)
    heartbeat = VisibilityHeartbeat(task_backends["default"], messages, 30, limit=60)
    with pytest.raises(RuntimeError, match="forced out"):
        crash_while_running(heartbeat, messages[0])
    answer = sqs.client.receive_message(
        QueueUrl=sqs.url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    )
    again = {m["Body"]: m for m in answer.get("Messages", [])}  # now, not in 30 s
    assert sorted(again) == ["message 0", "message 1"]
    # The interrupted task's message comes back as it was, its second receive.
    assert again["message 0"]["MessageId"] == messages[0]["MessageId"]
    assert again["message 0"]["Attributes"]["ApproximateReceiveCount"] == "2"
    # The waiting one never ran: re-sent, its receives start over.
    assert again["message 1"]["Attributes"]["ApproximateReceiveCount"] == "1"


def test_when_a_re_send_fails_the_rest_are_made_visible_without_trying_each(sqs, monkeypatch):
    # An unreachable SQS would make a stop wait out a client timeout for every waiting message.
    messages = receive(sqs, 3)
    backend = task_backends["default"]
    tries = []

    def refused(body, delay):
        tries.append(body)
        raise ConnectionError("SQS does not answer")

    monkeypatch.setattr(backend, "send", refused)
    heartbeat = VisibilityHeartbeat(backend, messages, 30, limit=60)
    assert heartbeat.release() == 3
    assert tries == ["message 0"]
    answer = sqs.client.receive_message(QueueUrl=sqs.url, MaxNumberOfMessages=10)
    assert sorted(m["Body"] for m in answer.get("Messages", [])) == [  # now, not in 30 s
        "message 0",
        "message 1",
        "message 2",
    ]


def test_a_message_received_by_a_worker_that_dies_at_once_is_hidden_visibility_timeout_only(sqs):
    # A queue made elsewhere (Terraform, say) hides a received message 60 s; the worker's
    # VISIBILITY_TIMEOUT says 2. Killed right after ReceiveMessage (before its heartbeat's first
    # renewal), the message must come back after the worker's 2 s, not the queue's 60.
    sqs.client.set_queue_attributes(QueueUrl=sqs.url, Attributes={"VisibilityTimeout": "60"})
    sqs.client.send_message(QueueUrl=sqs.url, MessageBody="message")
    worker = sqs_worker()
    worker.prepare()
    assert worker.visibility_timeout == 2
    deadline = time.monotonic() + 10
    received = []
    while not received and time.monotonic() < deadline:
        received = worker.receive_now()
    assert len(received) == 1
    time.sleep(3)  # the worker is gone: nothing renews or deletes
    answer = sqs.client.receive_message(QueueUrl=sqs.url, WaitTimeSeconds=1)
    assert len(answer.get("Messages", [])) == 1
