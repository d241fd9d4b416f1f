"""casusult.jsonlog.JsonFormatter on its own: one JSON object per record; no services."""

import json
import logging
import sys

from casusult.jsonlog import JsonFormatter


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
