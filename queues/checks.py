"""System checks for the queue backends.

| id           | when                    | what                                                      |
| ------------ | ----------------------- | --------------------------------------------------------- |
| queues.E001  | every check, no network | the RQ URL/OPTIONS name a cluster-mode endpoint           |
| queues.E002  | check --deploy          | the live probe found a cluster-mode or sharded server     |
| queues.E003  | check --deploy          | the live probe could not reach the RQ Redis (fails closed) |

Never reuse a retired id.
"""

from django.core import checks

from .cluster import REMEDY, cluster_endpoint_reason, probe_cluster_reason, redact


def check_rq_backend(backend, deploy):
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
    import redis

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


@checks.register(checks.Tags.compatibility, deploy=True)
def check_rq_servers(app_configs=None, **kwargs):
    """Deploy check: probe every RQ backend's live server (the static check runs anyway)."""
    from django.tasks import task_backends

    from .backends.rq import RQBackend

    errors = []
    for backend in task_backends.all():
        if isinstance(backend, RQBackend) and not cluster_endpoint_reason(
            backend.url, backend.options["CLUSTER"]
        ):
            errors += check_rq_backend(backend, deploy=True)
    return errors
