"""One JSON object per log line, for log pipelines (CloudWatch, Loki) that parse fields; and the
plain one-line format. Both hide credentials in any URL a line carries (redis_endpoints).

Standard library only (redis_endpoints is too): gunicorn's master loads it before Django is set up.
"""

import json
import logging
from datetime import UTC, datetime

from redis_endpoints import redact_text

# Attributes every LogRecord has; anything else on a record came from `extra=` and is a field.
STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", (), None)).keys()
) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Formats a record as {"ts", "level", "logger", "message", ...extra fields, "exc"}."""

    def format(self, record):
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_text(record.getMessage()),
            "pid": record.process,
        }
        for name, value in vars(record).items():
            if name not in STANDARD_ATTRIBUTES and not name.startswith("_"):
                entry[name] = redact_text(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = redact_text(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = redact_text(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact_text(self.formatStack(record.stack_info))
        # default=str: a field that is not JSON (a datetime, a UUID) must never lose the line.
        return json.dumps(entry, default=str, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """logging.Formatter's line (and traceback), with credentials in URLs hidden."""

    def format(self, record):
        return redact_text(super().format(record))
