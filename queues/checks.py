"""The deploy pass of the queue backends' system checks; each backend's checks are its check().

| id           | when                    | what                                                      |
| ------------ | ----------------------- | --------------------------------------------------------- |
| queues.E001  | every check, no network | an RQ backend's RQ_QUEUES entry names a cluster endpoint  |
| queues.E002  | check --deploy          | the live probe found a cluster-mode or sharded server     |
| queues.E003  | check --deploy          | the live probe could not reach the RQ Redis (fails closed) |
| queues.W001  | check --deploy          | the SQS queue has no redrive policy (no dead-letter queue) |
| queues.W002  | check --deploy          | the SQS redrive policy's maxReceiveCount < MAX_ATTEMPTS   |
| queues.W003  | check --deploy          | the SQS queue's redrive policy could not be read           |
| queues.E004  | every check             | a backend's OPTIONS has unknown keys                      |
| queues.E005  | every check             | a backend's OPTIONS value is bad (one error per key)      |
| queues.E006  | every check             | an RQ backend's queue is missing from RQ_QUEUES           |
| queues.E007  | every check             | an RQ backend's RQ_QUEUES entry names no JSON serializer  |
| queues.E008  | every check             | an RQ backend's queues are on different connections       |
| queues.E009  | every check, no network | an RQ_QUEUES entry django-rq cannot build a client from   |
| queues.W004  | every check             | RQ_QUEUES sets DEFAULT_TIMEOUT/DEFAULT_RESULT_TTL (unused) |
| queues.W005  | every check             | an RQ backend, and django_rq is not in INSTALLED_APPS      |
| queues.W006  | every check             | django_rq comes before queues in INSTALLED_APPS            |
| queues.W007  | every check             | an RQ backend, and RQ["JOB_CLASS"] is not our TaskJob       |
| queues.E010  | every check             | a TASK_MODULES entry cannot be imported or defines no task |
| queues.E011  | every check             | a backend of this app, and queues is not in INSTALLED_APPS |

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
        if not isinstance(backend, QueueBackend):
            continue
        if not any(message.is_serious() for message in backend.check()):
            errors += backend.check(deploy=True)
    return errors
