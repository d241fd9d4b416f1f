"""The SQS backend and worker in this process against moto over HTTP, with a dead-letter queue."""

import ctypes
import datetime
import json
import logging
import os
import socket
import threading
import time
import urllib.parse
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError
from django.tasks import task_backends
from django.tasks.exceptions import InvalidTask
from django.tasks.signals import task_finished
from django.utils import timezone

from queues import liveness
from queues.exceptions import QueueConfigurationError
from queues.sqs import messages
from queues.sqs.backend import SQSBackend
from queues.sqs.worker import SQSWorker
from tests.queues import tasks as queue_tasks
from tests.queues.sqs.support import (
    SQS_BACKEND,
    burst_timing_out_twice,
    burst_until,
    dead_letter_after_one_receive,
    dlq_bodies,
    dlq_reasons,
    message_count,
    run_burst,
    sqs_worker,
    visible_count,
)

# django_db: the in-process worker calls close_old_connections() between jobs (see tests/queues/rq).
pytestmark = [pytest.mark.sqs, pytest.mark.django_db]


def test_enqueued_tasks_run_and_are_deleted(sqs):
    for name in ("a", "b", "c"):
        queue_tasks.record_marker.enqueue(name)
    assert run_burst() == 0
    assert sorted(queue_tasks.markers()) == ["a", "b", "c"]
    assert message_count(sqs.client, sqs.url) == 0


def test_message_is_versioned_json_naming_the_task(sqs):
    result = queue_tasks.record_marker.enqueue("json")
    message = sqs.client.receive_message(QueueUrl=sqs.url, WaitTimeSeconds=1)["Messages"][0]
    body = json.loads(message["Body"])
    assert body["v"] == 1
    assert body["id"] == result.id
    assert body["task"] == "tests.queues.tasks.record_marker"
    assert (body["args"], body["kwargs"], body["run_after"]) == (["json"], {}, None)


def test_queue_name_is_resolved_with_get_queue_url(sqs, settings):
    settings.TASKS = {
        "default": {"BACKEND": SQS_BACKEND, "OPTIONS": {"QUEUE_NAME": sqs.name}},
    }
    assert task_backends["default"].queue_url == sqs.url


def test_a_queue_url_on_localhost_is_reached_without_an_endpoint_variable(sqs, monkeypatch):
    # The URL a user copies from moto (or ElasticMQ) is enough: boto3 alone went to AWS with it.
    monkeypatch.delenv("AWS_ENDPOINT_URL_SQS")
    url = urllib.parse.urlsplit(sqs.url)
    local = url._replace(netloc=f"localhost:{url.port}").geturl()
    backend = SQSBackend("default", {"OPTIONS": {"QUEUE_URL": local}})
    backend.ping()
    backend.send("{}", 0)
    assert message_count(sqs.client, sqs.url) == 1


def test_malformed_messages_end_in_the_dlq_while_good_ones_run(sqs, caplog):
    good = {"v": 1, "id": "x", "args": [], "kwargs": {}}
    bad_bodies = sorted(
        [
            "this is not json",
            json.dumps({**good, "v": 2, "task": "tests.queues.tasks.record_marker"}),
            json.dumps({**good, "task": "os.system", "args": ["touch /tmp/never"]}),
            json.dumps({**good, "task": "tests.queues.tasks.not_a_task", "args": ["bad"]}),
            json.dumps({**good, "task": "tests.queues.tasks.no_such_task"}),
            json.dumps({**good, "task": "tests.queues.tasks.record_marker", "attempt": 0}),
            json.dumps({**good, "task": "."}),
            json.dumps({**good, "task": "..x"}),
        ]
    )
    for body in bad_bodies[:3]:
        sqs.client.send_message(QueueUrl=sqs.url, MessageBody=body)
    queue_tasks.record_marker.enqueue("good-1")
    for body in bad_bodies[3:]:
        sqs.client.send_message(QueueUrl=sqs.url, MessageBody=body)
    queue_tasks.record_marker.enqueue("good-2")

    with caplog.at_level(logging.WARNING, logger="queues.worker"):
        assert burst_until(lambda: len(dlq_bodies(sqs)) == len(bad_bodies), attempts=2)

    assert dlq_bodies(sqs) == bad_bodies
    assert sorted(queue_tasks.markers()) == ["good-1", "good-2"]
    assert message_count(sqs.client, sqs.url) == 0
    # Once each: moved to the DLQ by the worker at their first receive.
    set_aside = [r.getMessage() for r in caplog.records if "outcome=set-aside" in r.getMessage()]
    assert len(set_aside) == len(bad_bodies), set_aside
    assert all(f"next=dlq:{sqs.name}-dlq" in line for line in set_aside)
    reasons = dlq_reasons(sqs)
    assert sum(reason.startswith("malformed: ") for reason in reasons) == 5, reasons
    # os.system, not_a_task, no_such_task: looked up, not registered, never imported.
    assert sum(reason.startswith("not-allowed: ") for reason in reasons) == 3, reasons


def test_a_task_module_that_cannot_be_imported_fails_the_worker_at_start(sqs, settings):
    raising = "tests.queues.tasks_raising_on_import"
    settings.TASKS["default"]["OPTIONS"]["TASK_MODULES"] = [*settings.TEST_TASK_MODULES, raising]
    with pytest.raises(QueueConfigurationError, match=rf"TASK_MODULES'\] lists '{raising}'") as e:
        run_burst()
    assert "redis://:***@cache:6379/0" in str(e.value) and "s3cret" not in str(e.value)


def test_failing_task_is_retried_then_moved_to_the_dlq(sqs, settings):
    settings.TASKS["default"]["OPTIONS"].update(MAX_ATTEMPTS=3, RETRY_DELAY=0)
    result = queue_tasks.fail_always.enqueue("x")
    run_burst()  # a retry delay of 0: every attempt is received again at once
    assert queue_tasks.markers() == ["failed:x"] * 3
    assert message_count(sqs.client, sqs.url) == 0
    [body] = dlq_bodies(sqs)
    envelope = json.loads(body)
    # The DLQ holds the task as its next attempt: a redrive runs it once more, as attempt 4.
    assert (envelope["id"], envelope["attempt"], len(envelope["worker_ids"])) == (result.id, 4, 3)
    assert dlq_reasons(sqs) == ["failed on attempt 3 of 3"]


@pytest.mark.parametrize(("poison", "marker"), [("exits", "exited"), ("interrupts", "interrupted")])
def test_a_task_that_exits_or_is_interrupted_fails_its_attempts_and_the_worker_goes_on(
    sqs, settings, poison, marker
):
    """SystemExit (sys.exit()) or KeyboardInterrupt raised from the task's code ended the
    worker, and each worker after it that received the message again (under --concurrency each
    worker process it ended exited 0), until the redrive policy took it away."""
    settings.TASKS["default"]["OPTIONS"].update(MAX_ATTEMPTS=2, RETRY_DELAY=0)
    getattr(queue_tasks, poison).enqueue("x")
    queue_tasks.record_marker.enqueue("after")
    assert run_burst() == 0
    assert sorted(queue_tasks.markers()) == ["after", f"{marker}:x", f"{marker}:x"]
    assert dlq_reasons(sqs) == ["failed on attempt 2 of 2"]


def test_run_after_beyond_the_sqs_cap_is_resent_until_due(sqs, monkeypatch, caplog):
    monkeypatch.setattr(messages, "MAX_DELAY_SECONDS", 1)  # stands in for SQS's 900 s
    due = timezone.now() + datetime.timedelta(seconds=3.5)
    queue_tasks.record_marker.using(run_after=due).enqueue("late")

    run_burst(long_poll=True)  # nothing is due: burst returns at once without running it
    assert queue_tasks.markers() == []

    worker = sqs_worker(max_jobs=1)
    thread = threading.Thread(target=worker.run, daemon=True)
    with caplog.at_level(logging.INFO, logger="queues.worker"):
        thread.start()
        time.sleep(max(0, (due - timezone.now()).total_seconds()) - 0.5)
        assert queue_tasks.markers() == []
        thread.join(timeout=15)
    assert not thread.is_alive()
    assert queue_tasks.markers() == ["late"]
    assert timezone.now() >= due
    deferrals = [r for r in caplog.records if "outcome=deferred" in r.getMessage()]
    assert len(deferrals) >= 2  # 1 s hops: re-sent until due
    assert message_count(sqs.client, sqs.url) == 0


# transaction: the worker closes the connection, which restoring TIME_ZONE then reconfigures.
@pytest.mark.django_db(transaction=True)
def test_without_use_tz_naive_times_travel_and_deferred_tasks_wait_for_them(
    sqs, settings, monkeypatch
):
    """USE_TZ = False: run_after and enqueued_at are naive (TIME_ZONE's wall clock); a message
    carries them as aware times, and no task is set aside as malformed for lacking a zone."""
    settings.USE_TZ, settings.TIME_ZONE = False, "Asia/Tokyo"
    monkeypatch.setattr(messages, "MAX_DELAY_SECONDS", 1)  # the worker re-sends until due
    due = timezone.now() + datetime.timedelta(seconds=2)
    assert timezone.is_naive(due)
    queue_tasks.record_marker.enqueue("now")
    queue_tasks.record_marker.using(run_after=due).enqueue("later")
    assert burst_until(lambda: "later" in queue_tasks.markers())
    assert sorted(queue_tasks.markers()) == ["later", "now"]
    assert timezone.now() >= due  # not 9 hours late, nor early
    assert dlq_bodies(sqs) == []


def test_a_task_s_context_names_the_backend_and_queue_it_was_enqueued_on(sqs, settings):
    # The worker handed the task the registered Task as decorated (backend "default", its
    # queue), not the one enqueue() was called on.
    sqs_options = {**settings.TASKS["default"], "QUEUES": ["default", "other"]}
    settings.TASKS = {
        "default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"},
        "sqs": sqs_options,
    }
    finished = []

    def remember(sender, task_result, **kwargs):
        finished.append(task_result)

    queue_tasks.context_task.using(backend="sqs", queue_name="other").enqueue()
    worker = SQSWorker(task_backends["sqs"], burst=True)
    worker.options = {**worker.options, "WAIT_TIME_SECONDS": 0}
    task_finished.connect(remember)
    try:
        assert worker.run() == 0
    finally:
        task_finished.disconnect(remember)
    [result] = finished
    assert (result.task.backend, result.task.queue_name) == ("sqs", "other")
    assert result.return_value == ["sqs", "other"]


def test_visibility_is_extended_while_a_task_runs(sqs):
    queue_tasks.slow_marker.enqueue("slow", 3)  # 3 s against a queue visibility of 1 s
    thread = threading.Thread(target=run_burst, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while "start:slow" not in queue_tasks.markers() and time.monotonic() < deadline:
        time.sleep(0.05)
    while thread.is_alive():
        stolen = sqs.client.receive_message(QueueUrl=sqs.url, WaitTimeSeconds=0)
        assert "Messages" not in stolen, "another consumer received the running task's message"
        time.sleep(0.3)
    thread.join()
    assert queue_tasks.markers() == ["start:slow", "slow"]
    assert message_count(sqs.client, sqs.url) == 0


def test_task_past_job_timeout_is_stopped_and_counts_as_a_failed_attempt(sqs, settings, caplog):
    settings.TASKS["default"]["OPTIONS"].update(JOB_TIMEOUT=1, MAX_ATTEMPTS=2, RETRY_DELAY=0)
    queue_tasks.slow_marker.enqueue("stuck", 30)
    timed_out = burst_timing_out_twice(caplog)
    assert queue_tasks.markers() == ["start:stuck"] * 2  # interrupted twice: never reached its end
    assert "attempt=1/2 next_attempt_in=0s" in timed_out[0]
    assert f"attempt=2/2 next=dlq:{sqs.name}-dlq" in timed_out[1]
    assert message_count(sqs.client, sqs.url) == 0
    assert len(dlq_bodies(sqs)) == 1


def test_a_task_whose_code_returned_in_time_is_not_timed_out(sqs, settings, caplog):
    # The code returns at 0.5 s; turning a million items into JSON ends past the 1 s limit, which
    # must not count: the limit covers the task's own code, not the worker's bookkeeping after it.
    settings.TASKS["default"]["OPTIONS"]["JOB_TIMEOUT"] = 1
    queue_tasks.sleep_then_return_much.enqueue(0.5, 1_000_000)
    with caplog.at_level(logging.INFO, logger="queues.worker"):
        run_burst()
    outcomes = [r.getMessage() for r in caplog.records if "outcome=" in r.getMessage()]
    assert len(outcomes) == 1 and "outcome=succeeded" in outcomes[0], outcomes
    assert queue_tasks.markers() == ["returned"]
    assert message_count(sqs.client, sqs.url) == 0


def test_messages_waiting_behind_a_long_task_stay_hidden(sqs, settings):
    # Held for VISIBILITY_TIMEOUT 5 s while the queue's own is 1 s; the task takes 3 s.
    settings.TASKS["default"]["OPTIONS"]["VISIBILITY_TIMEOUT"] = 5
    queue_tasks.slow_marker.enqueue("slow", 3)
    for name in ("a", "b", "c"):
        queue_tasks.record_marker.enqueue(name)
    worker = sqs_worker(max_jobs=4)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while "start:slow" not in queue_tasks.markers() and time.monotonic() < deadline:
        time.sleep(0.05)  # one receive took all four; the slow one runs now
    while thread.is_alive():
        stolen = sqs.client.receive_message(QueueUrl=sqs.url, WaitTimeSeconds=0)
        assert "Messages" not in stolen, "a message this worker holds was received again"
        time.sleep(0.3)
    thread.join()
    assert sorted(queue_tasks.markers()) == ["a", "b", "c", "slow", "start:slow"]
    assert message_count(sqs.client, sqs.url) == 0


def test_messages_waiting_behind_a_slow_task_go_to_other_workers(sqs, settings):
    # The task runs until the test releases it (8 s at most), longer than VISIBILITY_TIMEOUT
    # (1 s): the messages received with it are handed to other workers rather than waiting for
    # it, and run once each. Re-sent, not released: on a queue that dead-letters a message at its
    # second receive, a released one reached the DLQ without ever running.
    settings.TASKS["default"]["OPTIONS"]["VISIBILITY_TIMEOUT"] = 1
    dead_letter_after_one_receive(sqs)
    queue_tasks.held_marker.enqueue("slow", 8)
    for name in ("a", "b"):
        queue_tasks.record_marker.enqueue(name)
    worker = sqs_worker(burst=True)
    first = threading.Thread(target=worker.run, daemon=True)
    first.start()
    try:
        deadline = time.monotonic() + 10
        while "start:slow" not in queue_tasks.markers() and time.monotonic() < deadline:
            time.sleep(0.05)
        deadline = time.monotonic() + 4
        while visible_count(sqs.client, sqs.url) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # released after about 1 s of the slow task
        run_burst()  # a second worker, while the first still runs the slow task
        assert "slow" not in queue_tasks.markers()
    finally:
        queue_tasks.release("slow")
        first.join(timeout=30)
        worker.stop()
    assert not first.is_alive()
    assert dlq_bodies(sqs) == []
    markers = queue_tasks.markers()
    assert sorted(markers) == ["a", "b", "slow", "start:slow"], markers
    assert markers[-1] == "slow"
    assert message_count(sqs.client, sqs.url) == 0


def test_a_wedged_task_stops_being_kept_hidden(sqs, settings, monkeypatch):
    # On a thread SIGALRM cannot stop the task: it stands for one wedged in C code.
    settings.TASKS["default"]["OPTIONS"]["JOB_TIMEOUT"] = 1
    monkeypatch.setattr(liveness, "STALL_GRACE", 0)
    queue_tasks.held_marker.enqueue("wedged", 8)  # until released, 8 s at most
    thread = threading.Thread(target=sqs_worker(max_jobs=1).run, daemon=True)
    thread.start()
    again = []
    try:
        # Not before the worker holds it: a receive of this test's own would win the message.
        deadline = time.monotonic() + 10
        while "start:wedged" not in queue_tasks.markers() and time.monotonic() < deadline:
            time.sleep(0.05)
        deadline = time.monotonic() + 7
        while not again and time.monotonic() < deadline:
            again = sqs.client.receive_message(QueueUrl=sqs.url, WaitTimeSeconds=1).get("Messages")
        assert again, "the wedged task's message was kept hidden past JOB_TIMEOUT + grace"
        assert thread.is_alive()  # received again while the wedged task still runs
        assert queue_tasks.markers() == ["start:wedged"]
    finally:
        queue_tasks.release("wedged")
    thread.join(timeout=15)
    assert queue_tasks.markers() == ["start:wedged", "wedged"]


@pytest.mark.django_db(transaction=True)
def test_a_timed_out_task_query_is_cancelled_on_the_server(sqs, settings):
    settings.TASKS["default"]["OPTIONS"]["JOB_TIMEOUT"] = 1
    tag = uuid.uuid4().hex
    queue_tasks.hold_database.enqueue(30, tag)
    run_burst()
    assert queue_tasks.markers() == ["querying"]
    assert queue_tasks.no_query_held(tag)  # without the cancel: 30 s
    queue_tasks.record_marker.enqueue("after")  # the worker's next task gets a sound connection
    assert burst_until(lambda: "after" in queue_tasks.markers())


def test_worker_rides_out_an_unreachable_endpoint_and_still_stops(aws_env, settings, caplog):
    closed_port = "http://127.0.0.1:9"  # discard port: nothing listens
    settings.TASKS = {
        "default": {
            "BACKEND": SQS_BACKEND,
            "OPTIONS": {
                "QUEUE_URL": f"{closed_port}/123456789012/nowhere",
                "CLIENT_PARAMS": {
                    "endpoint_url": closed_port,
                    "config": Config(retries={"max_attempts": 1}, connect_timeout=1),
                },
            },
        }
    }
    worker = sqs_worker()
    thread = threading.Thread(target=worker.run, daemon=True)
    with caplog.at_level(logging.WARNING, logger="queues.worker"):
        thread.start()
        time.sleep(1.5)
        worker.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert any("Receiving from SQS failed" in r.getMessage() for r in caplog.records)


def test_a_worker_says_when_receiving_works_again(sqs, caplog, monkeypatch):
    worker = sqs_worker()
    receive_now, calls = worker.receive_now, []

    def failing_once():
        calls.append(1)
        if len(calls) == 1:
            raise EndpointConnectionError(endpoint_url=sqs.url)
        worker.stop()
        return receive_now()

    monkeypatch.setattr(worker, "receive_now", failing_once)
    with caplog.at_level(logging.WARNING, logger="queues.worker"):
        assert worker.run() == 0
    said = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("Receiving from SQS failed") for line in said), said
    assert "Receiving from SQS works again after 1 failed attempt(s)" in said, said


def test_enqueue_to_a_silent_endpoint_gives_up_within_seconds(aws_env, settings):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        settings.TASKS = {
            "default": {
                "BACKEND": SQS_BACKEND,
                "OPTIONS": {
                    "QUEUE_URL": f"{url}/123456789012/silent",
                    "CLIENT_PARAMS": {"endpoint_url": url},
                },
            }
        }
        started = time.monotonic()
        with pytest.raises(Exception):  # noqa: B017, PT011 - botocore's timeout class varies
            queue_tasks.record_marker.enqueue("never")
        assert time.monotonic() - started < 15


def test_ping_asks_for_the_queue_by_name(sqs, settings):
    task_backends["default"].ping()  # QUEUE_URL configured: the name comes from it
    settings.TASKS = {
        "default": {"BACKEND": SQS_BACKEND, "OPTIONS": {"QUEUE_NAME": f"{sqs.name}-missing"}}
    }
    with pytest.raises(ClientError, match="NonExistentQueue"):
        task_backends["default"].ping()


def test_a_queue_in_another_region_than_the_default_one_is_reached(aws_env, settings):
    """QUEUE_URL names eu-west-1, AWS_DEFAULT_REGION says us-east-1: the client follows the URL
    (botocore would send every call to us-east-1, which answers NonExistentQueue)."""
    name = f"casusult-eu-{uuid.uuid4().hex[:10]}"
    boto3.client("sqs", region_name="eu-west-1").create_queue(QueueName=name)
    settings.TASKS = {
        "default": {
            "BACKEND": SQS_BACKEND,
            "OPTIONS": {
                "QUEUE_URL": f"https://sqs.eu-west-1.amazonaws.com/123456789012/{name}",
                "WAIT_TIME_SECONDS": 1,
                "TASK_MODULES": settings.TEST_TASK_MODULES,
            },
        }
    }
    queue_tasks.markers_client().delete(queue_tasks.MARKERS)
    queue_tasks.record_marker.enqueue("eu")
    assert task_backends["default"].stats()[0].counts["visible"] == 1
    assert run_burst() == 0
    assert queue_tasks.markers() == ["eu"]
    queue_tasks.markers_client().delete(queue_tasks.MARKERS)


def test_a_message_longer_than_the_queue_takes_is_refused_naming_the_limit(sqs, settings):
    """Arguments within the 256 KiB bound, on a queue made with Terraform's default
    max_message_size (256 KiB): with the envelope the body is longer than the queue takes."""
    sqs.client.set_queue_attributes(QueueUrl=sqs.url, Attributes={"MaximumMessageSize": "262144"})
    with pytest.raises(InvalidTask, match=r"SQS refused the message, \d+ bytes: .*262144 bytes"):
        queue_tasks.record_marker.enqueue("x" * 262_000)
    assert message_count(sqs.client, sqs.url) == 0


def fork_without_hooks():
    """fork() as uWSGI's master forks its workers by default: from C, running none of the
    os.register_at_fork() hooks (uWSGI runs them only with --py-call-uwsgi-fork-hooks). PyDLL
    keeps the GIL through the call, as the forking thread must hold it."""
    return ctypes.PyDLL(None).fork()


# pytest's process has threads of earlier tests; the child only looks at its client and exits.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize("fork", [os.fork, fork_without_hooks], ids=["os.fork", "uwsgi-fork"])
def test_a_forked_process_builds_its_own_client_not_the_parent_s(sqs, fork):
    # gunicorn --preload and uWSGI (by default) load wsgi.py (prepare_probes: the client is built)
    # in their master, then fork the workers: a backend built before the fork handed each child
    # the parent's client, its pooled connections included (here the ping's), although the shared
    # clients are keyed by the process. boto3's clients are not to be shared across a fork. Under
    # uWSGI the at-fork hook that forgot them never ran: each worker took the master's.
    backend = task_backends["default"]
    backend.warm_up()
    backend.ping()  # the parent's client now holds an open connection to SQS
    parent_clients = (backend.client, backend.poll_client)
    pid = fork()
    if pid == 0:  # the child: exit 0 only if it built clients of its own
        code = 1
        try:
            own = backend.client is not parent_clients[0]
            own = own and backend.poll_client is not parent_clients[1]
            backend.ping()
            code = 0 if own else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert backend.client is parent_clients[0]  # the parent keeps its own


def test_the_worker_s_log_lines_hide_the_endpoint_s_password(sqs_behind_a_proxy, caplog):
    # A project's own logging config (caplog's plain handler, no site formatter): the start-up
    # line names the queue URL, the failed receive botocore's refusal, which names its endpoint.
    worker = sqs_worker()
    stop = threading.Timer(0.2, worker.stop)  # the failed receive is logged once all the same
    stop.start()
    with caplog.at_level(logging.INFO):
        assert worker.run() == 0
    stop.join()
    assert "polling http://proxy:***@127.0.0.1:1/123456789012/q" in caplog.text
    assert (
        'Receiving from SQS failed (Could not connect to the endpoint URL: "http://proxy:***@'
        in (caplog.text)
    )
    assert sqs_behind_a_proxy not in caplog.text
