"""The SQS backend against moto in server mode over HTTP, with a real dead-letter redrive policy."""

import datetime
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from types import SimpleNamespace

import boto3
import pytest
from django.tasks import task_backends
from django.utils import timezone

from queues import liveness
from queues.backends import sqs as sqs_backend
from queues.backends.base import import_dependency
from queues.exceptions import MissingDependency, QueueConfigurationError
from tests.processes import run_workers_then, start_manage
from tests.queues import tasks as queue_tasks

# django_db: the in-process worker calls close_old_connections() between jobs (see test_queues_rq).
pytestmark = [pytest.mark.sqs, pytest.mark.django_db]
SQS_BACKEND = "queues.backends.sqs.SQSBackend"
MAX_RECEIVES = 2


@pytest.fixture
def aws_env(monkeypatch, sqs_endpoint_url):
    """Fake credentials and the moto endpoint, through boto3's standard variables."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_SQS": sqs_endpoint_url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def create_queue_with_dlq(client, name):
    dlq_url = client.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES)}
    url = client.create_queue(
        QueueName=name,
        Attributes={"VisibilityTimeout": "1", "RedrivePolicy": json.dumps(redrive)},
    )["QueueUrl"]
    return url, dlq_url


@pytest.fixture
def sqs(aws_env, settings):
    """A fresh queue (visibility 1 s) with a DLQ after 2 receives, as TASKS['default']."""
    client = boto3.client("sqs")
    name = f"casusult-{uuid.uuid4().hex[:10]}"
    url, dlq_url = create_queue_with_dlq(client, name)
    settings.TASKS = {
        "default": {
            "BACKEND": SQS_BACKEND,
            "OPTIONS": {"QUEUE_URL": url, "WAIT_TIME_SECONDS": 1, "VISIBILITY_TIMEOUT": 2},
        }
    }
    queue_tasks.markers_client().delete(queue_tasks.MARKERS)
    yield SimpleNamespace(client=client, url=url, dlq_url=dlq_url, name=name, env=aws_env)
    queue_tasks.markers_client().delete(queue_tasks.MARKERS)


def message_count(client, url):
    attributes = client.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def dlq_bodies(sqs):
    answer = sqs.client.receive_message(
        QueueUrl=sqs.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0
    )
    return sorted(message["Body"] for message in answer.get("Messages", []))


def run_burst():
    return task_backends["default"].make_worker(burst=True).run()


def burst_until(predicate, attempts=8):
    for _ in range(attempts):
        run_burst()
        if predicate():
            return True
    return predicate()


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


def test_malformed_messages_end_in_the_dlq_while_good_ones_run(sqs, caplog):
    good = {"v": 1, "id": "x", "args": [], "kwargs": {}}
    bad_bodies = sorted(
        [
            "this is not json",
            json.dumps({**good, "v": 2, "task": "tests.queues.tasks.record_marker"}),
            json.dumps({**good, "task": "os.system", "args": ["touch /tmp/never"]}),
            json.dumps({**good, "task": "tests.queues.tasks.not_a_task", "args": ["bad"]}),
            json.dumps({**good, "task": "tests.queues.tasks.no_such_task"}),
            # Import paths that raise other than ImportError must not kill the worker.
            json.dumps({**good, "task": "."}),
            json.dumps({**good, "task": "..x"}),
            json.dumps({**good, "task": "tests.queues.tasks_raising_on_import.task"}),
        ]
    )
    for body in bad_bodies[:3]:
        sqs.client.send_message(QueueUrl=sqs.url, MessageBody=body)
    queue_tasks.record_marker.enqueue("good-1")
    for body in bad_bodies[3:]:
        sqs.client.send_message(QueueUrl=sqs.url, MessageBody=body)
    queue_tasks.record_marker.enqueue("good-2")

    with caplog.at_level(logging.WARNING, logger="queues.worker"):
        assert burst_until(lambda: len(dlq_bodies(sqs)) == len(bad_bodies))

    assert dlq_bodies(sqs) == bad_bodies
    assert sorted(queue_tasks.markers()) == ["good-1", "good-2"]
    assert message_count(sqs.client, sqs.url) == 0
    set_aside = [r for r in caplog.records if "outcome=set-aside" in r.getMessage()]
    assert len(set_aside) == len(bad_bodies) * MAX_RECEIVES


def test_failing_task_is_redelivered_then_dead_lettered(sqs):
    queue_tasks.fail_always.enqueue("x")
    run_burst()
    assert queue_tasks.markers() == ["failed:x"]
    assert message_count(sqs.client, sqs.url) == 1  # not deleted: left for redelivery
    assert burst_until(lambda: len(dlq_bodies(sqs)) == 1)
    assert queue_tasks.markers() == ["failed:x"] * MAX_RECEIVES


def test_run_after_beyond_the_sqs_cap_is_resent_until_due(sqs, monkeypatch, caplog):
    monkeypatch.setattr(sqs_backend, "MAX_DELAY_SECONDS", 1)  # stands in for SQS's 900 s
    due = timezone.now() + datetime.timedelta(seconds=3.5)
    queue_tasks.record_marker.using(run_after=due).enqueue("late")

    run_burst()  # nothing is due: burst returns at once without running it
    assert queue_tasks.markers() == []

    worker = task_backends["default"].make_worker(max_jobs=1)
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


def test_delay_seconds_never_exceeds_the_cap():
    now = timezone.now()
    assert sqs_backend.delay_seconds(now + datetime.timedelta(hours=2), now) == 900
    assert sqs_backend.delay_seconds(now + datetime.timedelta(seconds=10.2), now) == 11
    assert sqs_backend.delay_seconds(now - datetime.timedelta(seconds=5), now) == 0


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


def test_task_past_job_timeout_is_stopped_and_left_for_redelivery(sqs, settings, caplog):
    settings.TASKS["default"]["OPTIONS"]["JOB_TIMEOUT"] = 1
    queue_tasks.slow_marker.enqueue("stuck", 30)
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="queues.worker"):
        run_burst()  # on the main thread, where SIGALRM reaches the task
    assert time.monotonic() - started < 10
    assert queue_tasks.markers() == ["start:stuck"]  # interrupted: never reached its end
    timed_out = [r.getMessage() for r in caplog.records if "outcome=timed-out" in r.getMessage()]
    assert len(timed_out) == 1 and "JOB_TIMEOUT (1 s)" in timed_out[0], timed_out
    assert message_count(sqs.client, sqs.url) == 1  # not deleted: redelivered, then the DLQ
    assert burst_until(lambda: len(dlq_bodies(sqs)) == 1)
    assert queue_tasks.markers() == ["start:stuck"] * MAX_RECEIVES


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
    worker = task_backends["default"].make_worker(max_jobs=4)
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
    # The task takes 8 s, longer than VISIBILITY_TIMEOUT (1 s): the messages received with it
    # are released to other workers rather than waiting for it, and run once each.
    settings.TASKS["default"]["OPTIONS"]["VISIBILITY_TIMEOUT"] = 1
    queue_tasks.slow_marker.enqueue("slow", 8)
    for name in ("a", "b"):
        queue_tasks.record_marker.enqueue(name)
    worker = task_backends["default"].make_worker(burst=True)
    first = threading.Thread(target=worker.run, daemon=True)
    first.start()
    try:
        deadline = time.monotonic() + 10
        while "start:slow" not in queue_tasks.markers() and time.monotonic() < deadline:
            time.sleep(0.05)
        deadline = time.monotonic() + 4
        while visible_count(sqs) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # released after about 1 s of the slow task
        run_burst()  # a second worker, while the first still runs the slow task
        assert "slow" not in queue_tasks.markers()
    finally:
        first.join(timeout=30)
        worker.stop()
    assert not first.is_alive()
    markers = queue_tasks.markers()
    assert sorted(markers) == ["a", "b", "slow", "start:slow"], markers
    assert markers[-1] == "slow"
    assert message_count(sqs.client, sqs.url) == 0


def visible_count(sqs):
    attributes = sqs.client.get_queue_attributes(
        QueueUrl=sqs.url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_a_wedged_task_stops_being_kept_hidden(sqs, settings, monkeypatch):
    # On a thread SIGALRM cannot stop the task: it stands for one wedged in C code.
    settings.TASKS["default"]["OPTIONS"]["JOB_TIMEOUT"] = 1
    monkeypatch.setattr(liveness, "STALL_GRACE", 0)
    queue_tasks.slow_marker.enqueue("wedged", 8)
    thread = threading.Thread(
        target=task_backends["default"].make_worker(max_jobs=1).run, daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 7
    again = []
    while not again and time.monotonic() < deadline:
        again = sqs.client.receive_message(QueueUrl=sqs.url, WaitTimeSeconds=1).get("Messages")
    assert again, "the wedged task's message was kept hidden past JOB_TIMEOUT + grace"
    assert thread.is_alive()  # received again while the wedged task still runs
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


@pytest.mark.parametrize(
    ("variable", "value"), [("SQS_JOB_TIMEOUT", "0"), ("SQS_MAX_MESSAGES", "11")]
)
def test_sqs_worker_variables_are_validated(manage, variable, value):
    env = {"QUEUE_BACKEND": "sqs", "SQS_QUEUE_NAME": "q", variable: value}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert variable in result.stderr


def test_sigterm_mid_task_finishes_it_receives_nothing_new_and_exits_zero(sqs):
    queue_tasks.slow_marker.enqueue("one", 2)
    queue_tasks.slow_marker.enqueue("two", 2)
    env = {
        **sqs.env,
        "QUEUE_BACKEND": "sqs",
        "SQS_QUEUE_URL": sqs.url,
        "SQS_WAIT_TIME_SECONDS": "1",
        "SQS_VISIBILITY_TIMEOUT": "5",
    }
    process = start_manage("runworker", env=env)
    deadline = time.monotonic() + 30
    while not queue_tasks.markers() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)

    assert process.returncode == 0, stderr
    started = queue_tasks.markers()
    assert len(started) == 2, stderr  # the running task finished; the other never started
    name = started[0].removeprefix("start:")
    assert started == [f"start:{name}", name]
    assert "outcome=succeeded" in stderr
    # The other message was released for other workers, not deleted and not kept hidden.
    left = sqs.client.receive_message(QueueUrl=sqs.url, WaitTimeSeconds=1)["Messages"]
    assert json.loads(left[0]["Body"])["args"][0] != name


def test_a_forced_stop_gives_back_the_messages_it_held_at_once(sqs):
    queue_tasks.slow_marker.enqueue("long", 20)
    for name in ("a", "b"):
        queue_tasks.record_marker.enqueue(name)
    env = {**sqs_worker_env(sqs), "SQS_VISIBILITY_TIMEOUT": "60"}
    process = start_manage("runworker", env=env)
    deadline = time.monotonic() + 30
    while "start:long" not in queue_tasks.markers() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    time.sleep(1.5)  # a second stop, not the same one arriving twice
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1, stderr
    assert "Second stop signal" in stderr
    # Back in the queue now, the interrupted task's message too, not in 60 s.
    received = {}
    deadline = time.monotonic() + 10
    while len(received) < 3 and time.monotonic() < deadline:
        answer = sqs.client.receive_message(
            QueueUrl=sqs.url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        for message in answer.get("Messages", []):
            received[message["MessageId"]] = json.loads(message["Body"])["args"][0]
    done = set(queue_tasks.markers())
    assert "long" not in done  # it was interrupted, and will run again
    # Those that ran before it (SQS does not promise order) are deleted; the others come back.
    assert sorted(received.values()) == sorted({"a", "b", "long"} - done), stderr


def test_missing_queue_fails_start_up_naming_the_variable(manage):
    result = manage("check", env={"QUEUE_BACKEND": "sqs", "SQS_QUEUE_URL": None})
    assert result.returncode != 0
    assert "SQS_QUEUE_URL" in result.stderr and "SQS_QUEUE_NAME" in result.stderr


def test_bad_options_name_the_alias(settings):
    settings.TASKS = {"jobs": {"BACKEND": SQS_BACKEND, "OPTIONS": {"QUEUE_URL": "x", "WAIT": 1}}}
    with pytest.raises(QueueConfigurationError, match=r"TASKS\['jobs'\].*WAIT"):
        task_backends["jobs"]
    settings.TASKS = {"jobs": {"BACKEND": SQS_BACKEND, "OPTIONS": {}}}
    with pytest.raises(QueueConfigurationError, match=r"TASKS\['jobs'\].*QUEUE_URL or QUEUE_NAME"):
        task_backends["jobs"]
    settings.TASKS = {
        "jobs": {"BACKEND": SQS_BACKEND, "OPTIONS": {"QUEUE_URL": "x", "WAIT_TIME_SECONDS": 21}}
    }
    with pytest.raises(QueueConfigurationError, match="WAIT_TIME_SECONDS"):
        task_backends["jobs"]
    settings.TASKS = {
        "jobs": {"BACKEND": SQS_BACKEND, "OPTIONS": {"QUEUE_URL": "x", "JOB_TIMEOUT": 0}}
    }
    with pytest.raises(QueueConfigurationError, match=r"TASKS\['jobs'\].*JOB_TIMEOUT"):
        task_backends["jobs"]


def test_missing_sdk_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(MissingDependency, match="'boto3'"):
        import_dependency("boto3", "boto3")


def test_queue_option_is_rejected_for_sqs(sqs):
    with pytest.raises(QueueConfigurationError, match="--queue"):
        task_backends["default"].make_worker(queues=["other"])


def test_worker_rides_out_an_unreachable_endpoint_and_still_stops(aws_env, settings, caplog):
    from botocore.config import Config

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
    worker = task_backends["default"].make_worker()
    thread = threading.Thread(target=worker.run, daemon=True)
    with caplog.at_level(logging.WARNING, logger="queues.worker"):
        thread.start()
        time.sleep(1.5)
        worker.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert any("Receiving from SQS failed" in r.getMessage() for r in caplog.records)


def test_sqs_clients_have_bounded_timeouts(sqs):
    backend = task_backends["default"]
    short, poll = backend.client.meta.config, backend.poll_client.meta.config
    assert short.connect_timeout <= 1
    assert short.read_timeout <= 3
    assert poll.read_timeout > backend.options["WAIT_TIME_SECONDS"]


def test_enqueue_to_a_silent_endpoint_gives_up_within_seconds(aws_env, settings):
    import socket

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        settings.TASKS = {
            "default": {
                "BACKEND": "queues.backends.sqs.SQSBackend",
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


def test_a_stop_signal_arriving_twice_at_once_is_one_stop(monkeypatch):
    from queues.workers.sqs import SQSWorker

    worker = SQSWorker(SimpleNamespace(options={}))
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    worker.request_stop(signal.SIGTERM, None)  # from the process group
    clock[0] += 0.01
    worker.request_stop(signal.SIGTERM, None)  # the --concurrency parent's forward: no force exit
    assert worker.stop_requested
    clock[0] += 2
    with pytest.raises(SystemExit) as exit_info:  # a real second request: exit now
        worker.request_stop(signal.SIGINT, None)
    assert exit_info.value.code == 1


def sqs_worker_env(sqs, **extra):
    return {**sqs.env, "QUEUE_BACKEND": "sqs", "SQS_QUEUE_URL": sqs.url,
            "SQS_WAIT_TIME_SECONDS": "1", **extra}  # fmt: skip


def test_a_worker_process_killed_under_concurrency_stops_the_rest_loudly(sqs):
    code, stderr = run_workers_then(
        sqs_worker_env(sqs), 2, lambda parent, children: os.kill(children[0], signal.SIGKILL)
    )
    assert code == 1, stderr
    assert "was killed by signal 9; stopping the other workers" in stderr
    assert "exit codes [-9, 0]" in stderr or "exit codes [0, -9]" in stderr, stderr


def test_start_up_errors_of_worker_processes_are_reported(sqs, manage):
    env = sqs_worker_env(sqs, SQS_QUEUE_URL=None, SQS_QUEUE_NAME="no-such-queue")
    result = manage("runworker", "--concurrency", "2", env=env, timeout=60)
    assert result.returncode == 1
    assert result.stderr.count("the queue server is unreachable or refused") == 2, result.stderr
    assert "NonExistentQueue" in result.stderr or "does not exist" in result.stderr


def test_sqs_max_messages_variable_reaches_the_worker(manage):
    env = {"QUEUE_BACKEND": "sqs", "SQS_QUEUE_NAME": "q", "SQS_MAX_MESSAGES": "1"}
    code = "from django.tasks import task_backends; print(task_backends['default'].options['MAX_MESSAGES'])"
    result = manage("shell", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "1"  # after the shell's "objects imported" line
