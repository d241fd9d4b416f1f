"""The RQ backend on a standalone Redis: backend, job format, worker, cluster refusal."""

from ..extras import require

require("rq")
