"""The RQ backend on a standalone Redis: backend, job format, worker, cluster refusal."""
