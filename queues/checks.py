"""The deploy pass of the queue backends' system checks; each backend's checks are its check().

| id           | when                    | what                                                      |
| ------------ | ----------------------- | --------------------------------------------------------- |
| queues.E001  | every check, no network | the RQ URL/OPTIONS name a cluster-mode endpoint           |
| queues.E002  | check --deploy          | the live probe found a cluster-mode or sharded server     |
| queues.E003  | check --deploy          | the live probe could not reach the RQ Redis (fails closed) |
| queues.W001  | check --deploy          | the SQS queue has no redrive policy (no dead-letter queue) |
| queues.W002  | check --deploy          | the SQS redrive policy's maxReceiveCount < MAX_ATTEMPTS   |
| queues.W003  | check --deploy          | the SQS queue's redrive policy could not be read           |

Never reuse a retired id.
"""

from django.tasks import task_backends

from .base import QueueBackend


def check_backend_servers(app_configs=None, **kwargs):
    """Deploy check: each queue backend's check(deploy=True), once its static checks pass.

    django.tasks already runs check() on every command: its errors are not repeated here, and a
    backend they fail is not reached over the network.
    """
    errors = []
    for backend in task_backends.all():
        if isinstance(backend, QueueBackend) and not backend.check():
            errors += backend.check(deploy=True)
    return errors
