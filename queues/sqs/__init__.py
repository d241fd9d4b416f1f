"""The Amazon SQS backend: backend, message format, worker, visibility heartbeat, set-up."""

from ..extras import require

require("sqs")
