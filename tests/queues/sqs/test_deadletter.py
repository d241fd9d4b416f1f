"""Dead letters on moto over HTTP: poison messages at once, the queue's own visibility timeout,
sqs_redrive, the redrive policy's deploy checks and sqs_setup's floor."""

import io
import json
import sys
import threading
import time
import uuid

import boto3
import pytest
from django.core.management import CommandError, call_command
from django.tasks import task_backends
from prometheus_client import REGISTRY

from queues.sqs.setup import setup_queues
from tests.processes import start_manage
from tests.queues import tasks as queue_tasks
from tests.queues.sqs.support import (
    SQS_BACKEND,
    dlq_bodies,
    message_count,
    run_burst,
    sqs_worker,
    visible_count,
    worker_env,
)

pytestmark = [pytest.mark.sqs, pytest.mark.django_db]

GOOD = {"v": 1, "id": "x", "args": [], "kwargs": {}}
# The five messages of issue 12 that can never run.
POISON = [
    "not json at all",
    json.dumps({**GOOD, "v": 7, "task": "tests.queues.tasks.record_marker"}),
    json.dumps({}),
    json.dumps({**GOOD, "task": "tests.queues.tasks.not_a_task", "args": ["x"]}),
    json.dumps({**GOOD, "task": "os.system", "args": ["touch /tmp/never"]}),
]


def command(*args):
    """The output of a manage.py command run in this process (with this test's settings)."""
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def wait_for(predicate, within):
    deadline = time.monotonic() + within
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.1)
    return predicate()


def test_poison_messages_reach_the_dlq_within_seconds_with_default_settings(
    aws_env, settings, capsys
):
    # The queue as sqs_setup makes it by default (visibility 60 s, maxReceiveCount 5), and the
    # worker with nothing set but the queue: the case of issue 12 took over 120 s.
    client = boto3.client("sqs")
    queue, dlq = setup_queues(client, f"defaults-{uuid.uuid4().hex[:8]}")
    settings.TASKS = {
        "default": {
            "BACKEND": SQS_BACKEND,
            "OPTIONS": {"QUEUE_URL": queue.url, "TASK_MODULES": settings.TEST_TASK_MODULES},
        }
    }
    queue_tasks.markers_client().delete(queue_tasks.MARKERS)
    env = {**aws_env, "QUEUE_BACKEND": "sqs", "SQS_QUEUE_URL": queue.url}
    worker = start_manage("runworker", "--max-jobs", "6", env=env)
    try:
        early = []
        for line in worker.stderr:  # until it polls (or exits: then the assertions below say so)
            early.append(line)
            if "polling" in line:
                break
        started = time.monotonic()
        for body in POISON:
            client.send_message(QueueUrl=queue.url, MessageBody=body)
        queue_tasks.record_marker.enqueue("good")
        assert wait_for(lambda: message_count(client, dlq.url) == len(POISON), within=30)
        elapsed = time.monotonic() - started
        # The rest through the same text stream: the loop above may have read lines past
        # "polling" into its buffer (the worker writes two more before its first receive, which a
        # loaded machine lets pile up), and communicate() with a timeout reads the pipe beneath it.
        rest = []
        reader = threading.Thread(target=lambda: rest.append(worker.stderr.read()), daemon=True)
        reader.start()
        worker.wait(timeout=30)
        reader.join(timeout=30)
        stderr = "".join(early) + "".join(rest)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0, stderr  # it survived them, and ran the good one
    with capsys.disabled():
        print(f"\n  5 poison messages in the DLQ {elapsed:.2f} s after they were sent", end=" ")
    assert queue_tasks.markers() == ["good"]
    set_aside = [line for line in stderr.splitlines() if "outcome=set-aside" in line]
    assert len(set_aside) == len(POISON), stderr  # logged once each
    assert "Visibility timeout 60 s (the queue's VisibilityTimeout)" in stderr
    assert message_count(client, queue.url) == 0


def test_the_queue_visibility_timeout_is_honoured(sqs, settings):
    # The queue says 2 s and OPTIONS say nothing: a message waiting behind a task that runs longer
    # is released to other workers after about 2 s (it would wait 60 s with the old default).
    client = sqs.client
    client.set_queue_attributes(QueueUrl=sqs.url, Attributes={"VisibilityTimeout": "2"})
    settings.TASKS["default"]["OPTIONS"]["VISIBILITY_TIMEOUT"] = None
    queue_tasks.slow_marker.enqueue("slow", 4)
    queue_tasks.record_marker.enqueue("waiting")
    worker = sqs_worker(max_jobs=2)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: "start:slow" in queue_tasks.markers(), within=10)
        started = time.monotonic()
        assert wait_for(lambda: visible_count(client, sqs.url) == 1, within=4)
        released_after = time.monotonic() - started
    finally:
        thread.join(timeout=20)
    assert worker.visibility_timeout == 2
    assert 1.5 < released_after < 3.5, released_after

    settings.TASKS["default"]["OPTIONS"]["VISIBILITY_TIMEOUT"] = 7
    settings.TASKS = dict(settings.TASKS)  # built again: SQS_VISIBILITY_TIMEOUT wins when set
    configured = sqs_worker()
    configured.prepare()
    assert configured.visibility_timeout == 7


def test_without_a_redrive_policy_poison_stays_and_the_deploy_check_says_so(
    aws_env, settings, caplog
):
    client = boto3.client("sqs")
    url = client.create_queue(QueueName=f"no-dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    settings.TASKS = {
        "default": {"BACKEND": SQS_BACKEND, "OPTIONS": {"QUEUE_URL": url, "WAIT_TIME_SECONDS": 0}}
    }
    client.send_message(QueueUrl=url, MessageBody="not json")
    sqs_worker(burst=True).run()
    assert message_count(client, url) == 1  # nowhere to go: left, not lost
    assert "has no redrive policy" in caplog.text
    assert "next=left-in-queue" in caplog.text
    ids = [error.id for error in task_backends["default"].check(deploy=True)]
    assert ids == ["queues.W001"]
    assert task_backends["default"].check() == []  # no network without deploy


def test_the_deploy_check_warns_when_max_receive_count_is_below_max_attempts(sqs, settings):
    settings.TASKS["default"]["OPTIONS"]["MAX_ATTEMPTS"] = 3  # the fixture's queue: 2 receives
    assert [e.id for e in task_backends["default"].check(deploy=True)] == ["queues.W002"]
    settings.TASKS["default"]["OPTIONS"]["MAX_ATTEMPTS"] = 2
    settings.TASKS = dict(settings.TASKS)
    assert task_backends["default"].check(deploy=True) == []
    settings.TASKS = {
        "default": {"BACKEND": SQS_BACKEND, "OPTIONS": {"QUEUE_NAME": f"{sqs.name}-missing"}}
    }
    [missing] = task_backends["default"].check(deploy=True)
    assert missing.id == "queues.W003"
    # SQS answered, so not "run the checks where SQS is reachable": the queue is to be made.
    assert "sqs_setup" in missing.hint


def test_the_deploy_check_names_the_region_variable_when_none_is_set(
    aws_env, settings, monkeypatch, tmp_path
):
    # boto3's own words ("You must specify a region.") name no variable; runworker's do.
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    settings.TASKS = {"default": {"BACKEND": SQS_BACKEND, "OPTIONS": {"QUEUE_NAME": "casusult"}}}
    [unread] = task_backends["default"].check(deploy=True)
    assert unread.id == "queues.W003"
    assert "AWS_DEFAULT_REGION" in unread.hint


def test_sqs_setup_keeps_max_receive_count_at_least_max_attempts(aws_env, settings):
    name = f"floor-{uuid.uuid4().hex[:8]}"
    options = {"QUEUE_NAME": name, "MAX_ATTEMPTS": 7}
    settings.TASKS = {"default": {"BACKEND": SQS_BACKEND, "OPTIONS": options}}
    assert "after 7 receives" in command("sqs_setup")  # the default 5, raised to MAX_ATTEMPTS
    low = command("sqs_setup", "--max-receive-count", "2")
    assert "below the backend's MAX_ATTEMPTS; using 7" in low
    assert "after 7 receives" in low


def test_sqs_redrive_moves_each_message_back_exactly_once(sqs, settings):
    settings.TASKS["default"]["OPTIONS"].update(MAX_ATTEMPTS=1)
    for name in ("a", "b", "c"):
        queue_tasks.fail_until.enqueue(name, 2)  # fails once, succeeds on its next attempt
    run_burst()
    assert len(dlq_bodies(sqs)) == 3

    route = f"from {sqs.name}-dlq to {sqs.name}"
    assert f"Moved 2 message(s) {route}" in command("sqs_redrive", "--max", "2")
    # moto has no StartMessageMoveTask: receive, send, delete.
    assert f"Moved 1 message(s) {route}" in command("sqs_redrive")
    assert "Moved 0 message(s)" in command("sqs_redrive")  # idempotent: nothing left to move

    assert message_count(sqs.client, sqs.dlq_url) == 0
    assert message_count(sqs.client, sqs.url) == 3
    run_burst()
    runs = sorted(m.split(":")[:2] for m in queue_tasks.markers())
    # Each task twice: its failed first attempt, then once more after the redrive (attempt 2).
    assert runs == [[name, str(n)] for name in ("a", "b", "c") for n in (1, 2)]
    assert message_count(sqs.client, sqs.url) == 0


def test_sqs_redrive_needs_a_dead_letter_queue(aws_env, settings):
    url = boto3.client("sqs").create_queue(QueueName=f"lone-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    settings.TASKS = {"default": {"BACKEND": SQS_BACKEND, "OPTIONS": {"QUEUE_URL": url}}}
    with pytest.raises(CommandError, match="has no redrive policy"):
        command("sqs_redrive")
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}
    with pytest.raises(CommandError, match="not SQSBackend"):
        command("sqs_redrive")


def test_a_refused_path_is_never_imported_and_is_counted(sqs):
    queue_tasks.markers_client().delete(queue_tasks.SIDE_EFFECT_KEY)
    counted = {"backend": "default", "reason": "not-allowed"}
    before = REGISTRY.get_sample_value("tasks_refused_total", counted) or 0
    body = json.dumps({**GOOD, "task": f"{queue_tasks.SIDE_EFFECT_MODULE}.harmless"})
    sqs.client.send_message(QueueUrl=sqs.url, MessageBody=body)
    run_burst()
    assert queue_tasks.SIDE_EFFECT_MODULE not in sys.modules  # the worker ran in this process
    assert queue_tasks.side_effect_imports() == 0
    assert dlq_bodies(sqs) == [body]
    assert REGISTRY.get_sample_value("tasks_refused_total", counted) == before + 1


def test_sqs_redrive_beside_a_running_worker_moves_what_was_there_once(sqs, aws_env):
    # The worker sets each poison message aside again within a second: the fallback (moto has
    # no StartMessageMoveTask) looped on them for ever, and --max counted them twice.
    for body in POISON[:2]:
        sqs.client.send_message(QueueUrl=sqs.dlq_url, MessageBody=body)
    worker = start_manage("runworker", env=worker_env(sqs))
    try:
        route = f"from {sqs.name}-dlq to {sqs.name}"
        assert f"Moved 2 message(s) {route}" in command("sqs_redrive", "--max", "5")
        assert wait_for(lambda: message_count(sqs.client, sqs.dlq_url) == 2, within=30)
        assert f"Moved 2 message(s) {route}" in command("sqs_redrive")
    finally:
        worker.terminate()
        worker.communicate(timeout=60)
