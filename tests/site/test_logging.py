"""JSON logs: one object per line, with fields for record failures, flushes and worker tasks."""

import json

import pytest
from django.test import override_settings

from impressions import recorder
from impressions.flush import flush_pending
from impressions.recorder import get_client, record_impressions
from queues.execution import TaskTimer
from tests.factories import make_posts


def test_record_failure_is_one_line_with_fields(json_lines, dead_redis_url, monkeypatch):
    monkeypatch.setattr(recorder, "lost", recorder.LossCounter())  # no line logged yet
    with override_settings(IMPRESSIONS_REDIS_URL=dead_redis_url):
        record_impressions("u:1", [1, 2, 3])
    [entry] = [e for e in json_lines() if e["logger"] == "impressions.recorder"]
    assert entry["level"] == "WARNING"
    assert (entry["lost"], entry["calls"]) == (3, 1)
    assert entry["error"] == "ConnectionError"


@pytest.mark.django_db
def test_every_flush_logs_its_report(json_lines):
    get_client(1.0).flushdb()
    posts = make_posts(2)
    record_impressions("u:1", [post.pk for post in posts])
    report = flush_pending()
    [entry] = [e for e in json_lines() if e["logger"] == "impressions.flush"]
    assert entry["flush"]["flush_id"] == report.flush_id
    assert entry["flush"]["impressions_applied"] == 2
    assert entry["flush"]["outcome"] == "applied"
    get_client(1.0).flushdb()


def test_every_task_logs_its_outcome(json_lines):
    TaskTimer("impressions.tasks.flush_impressions_task", "job-1").log("succeeded")
    [entry] = [e for e in json_lines() if e["logger"] == "queues.worker"]
    assert entry["task"] == "impressions.tasks.flush_impressions_task"
    assert entry["task_id"] == "job-1"
    assert entry["outcome"] == "succeeded"
    assert entry["duration"] >= 0
    # What follows the outcome in the line's text is fields too.
    TaskTimer("t.x", "job-2").log("failed", attempt="1/3", next_attempt_in="10s")
    [entry] = [e for e in json_lines() if e.get("task_id") == "job-2"]
    assert entry["message"].endswith(" attempt=1/3 next_attempt_in=10s")
    assert (entry["attempt"], entry["next_attempt_in"]) == ("1/3", "10s")


def test_a_message_set_aside_says_why_and_where_in_fields(
    manage, production_queue, moto_sqs_client
):
    # A log pipeline filters the dead-lettered messages on `next` and groups them on `reason`.
    name = production_queue["SQS_QUEUE_NAME"]
    url = moto_sqs_client.get_queue_url(QueueName=name)["QueueUrl"]
    moto_sqs_client.send_message(QueueUrl=url, MessageBody="this is not json")
    env = {**production_queue, "QUEUE_BACKEND": "sqs", "SQS_WAIT_TIME_SECONDS": "0"}
    result = manage("runworker", "--burst", env={**env, "LOG_FORMAT": "json"})
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    [entry] = [line for line in lines if line.get("outcome") == "set-aside"]
    assert entry["next"] == f"dlq:{name}-dlq"
    assert entry["reason"].startswith("body is not JSON"), entry


def test_django_lines_are_printed_once_with_debug_on(manage):
    # Django's own DEBUG-only console handler used to print every django.* line a second time.
    code = "import logging; logging.getLogger('django.tasks').warning('printed-once')"
    result = manage(
        "shell", "-c", code, env={"DJANGO_SETTINGS_MODULE": "settings.dev", "DEBUG": "true"}
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("printed-once") == 1, result.stderr


def test_an_sqs_worker_prints_its_own_info_lines_and_no_botocore_ones(manage, production_queue):
    # boto3 logs at INFO where it found the credentials and the endpoint, on every command that
    # builds an SQS client: two lines of noise before each worker's own.
    env = {**production_queue, "QUEUE_BACKEND": "sqs", "SQS_WAIT_TIME_SECONDS": "0"}
    result = manage("runworker", "--burst", env=env)
    assert result.returncode == 0, result.stderr
    assert " INFO queues.worker SQS worker " in result.stderr, result.stderr
    assert " INFO botocore." not in result.stderr, result.stderr
    assert " INFO boto3." not in result.stderr, result.stderr
