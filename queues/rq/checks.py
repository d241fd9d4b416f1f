"""RQBackend's system checks (ids: see queues.checks): cluster endpoints, then the live server."""

import redis
from django.core import checks

from .cluster import REMEDY, cluster_endpoint_reason, probe_cluster_reason, redact


def rq_backend_errors(backend, deploy):
    """Errors for one RQBackend: the URL alone, and with `deploy` the live server too."""
    url, where = backend.url, f"TASKS[{backend.alias!r}]"
    if reason := cluster_endpoint_reason(url, backend.options["CLUSTER"]):
        return [
            checks.Error(
                f"{where} points RQ at a cluster-mode Redis ({reason}); RQ fails there with "
                "CROSSSLOT errors.",
                hint=REMEDY,
                id="queues.E001",
            )
        ]
    if not deploy:
        return []
    try:
        reason = probe_cluster_reason(backend.raw_connection())
    except (redis.ConnectionError, redis.TimeoutError) as error:
        return [
            checks.Error(
                f"{where}: could not reach the RQ Redis at {redact(url)} to verify it is not in "
                f"cluster mode ({error}).",
                hint="Run the deploy checks where the Redis is reachable, or fix RQ_REDIS_URL.",
                id="queues.E003",
            )
        ]
    if reason:
        return [
            checks.Error(
                f"{where}: the Redis at {redact(url)} cannot host RQ: {reason}.",
                hint=REMEDY,
                id="queues.E002",
            )
        ]
    return []
