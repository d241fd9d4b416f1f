"""JSON logs: one object per line, with fields for record failures, flushes and worker tasks."""

import io
import json
import logging
import sys

import pytest
from django.test import override_settings

import devservices
from casusult.jsonlog import JsonFormatter
from impressions.flush import flush_pending
from impressions.recorder import get_client, record_impressions
from queues.execution import TaskTimer
from tests.factories import make_posts


@pytest.fixture
def json_lines():
    """Everything logged during the test, through the JSON formatter, as parsed objects."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_formatter_fields_extras_and_exceptions():
    logger = logging.getLogger("casusult.test")
    record = logger.makeRecord("casusult.test", logging.ERROR, __file__, 1, "n=%d", (3,), None)
    record.post_id = 7
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "n=3"
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "casusult.test"
    assert entry["post_id"] == 7
    assert "ValueError: boom" in entry["exc"]
    assert entry["ts"].endswith("+00:00")


def test_unserializable_extra_does_not_lose_the_line():
    record = logging.makeLogRecord({"msg": "x", "when": object()})
    assert json.loads(JsonFormatter().format(record))["when"].startswith("<object")


def test_record_failure_is_one_line_with_fields(json_lines):
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{devservices.free_port()}/0"):
        record_impressions("u:1", [1, 2, 3])
    [entry] = [e for e in json_lines() if e["logger"] == "impressions.recorder"]
    assert entry["level"] == "WARNING"
    assert entry["lost"] == 3
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


def test_django_lines_are_printed_once_with_debug_on(manage):
    # Django's own DEBUG-only console handler used to print every django.* line a second time.
    code = "import logging; logging.getLogger('django.tasks').warning('printed-once')"
    result = manage(
        "shell", "-c", code, env={"DJANGO_SETTINGS_MODULE": "settings.dev", "DEBUG": "true"}
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("printed-once") == 1, result.stderr
