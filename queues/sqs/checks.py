"""SQSBackend's deploy checks (ids: see queues.checks): the live queue's redrive policy."""

import json

from botocore.exceptions import BotoCoreError, ClientError
from django.core import checks

from redis_endpoints import redact_text

SETUP_HINT = (
    "Run `manage.py sqs_setup` with this backend configured: it creates the dead-letter queue and"
    " sets the redrive policy (maxReceiveCount at least MAX_ATTEMPTS)."
)

# SQS answered that the queue does not exist (in this region and account).
MISSING_HINT = (
    "Create it with `manage.py sqs_setup` (this backend configured: the queue, its dead-letter"
    " queue and the redrive policy), or fix its name, region or account."
)


def unread_policy_hint(error):
    """What to do when SQS did not give the redrive policy: make the queue it says does not
    exist; set what boto3 could not even call SQS without (region, credentials, endpoint: the
    remedies runworker gives, which name the variables); else reach SQS with the IAM actions."""
    from .backend import error_code  # here: the backend module imports this one
    from .worker import SQSWorker

    code = error_code(error)
    if "NonExistentQueue" in code or code == "QueueDoesNotExist":
        return MISSING_HINT
    if not code.startswith("AccessDenied") and (remedy := SQSWorker.remedy(error)):
        return f"{remedy[:1].upper()}{remedy[1:]}."
    return (
        "Run the deploy checks where SQS is reachable, with sqs:GetQueueUrl and"
        " sqs:GetQueueAttributes on the queue."
    )


def redrive_warnings(backend):
    """Warnings about the redrive policy of `backend`'s queue, read from SQS."""
    where = f"TASKS[{backend.alias!r}] (SQS queue {backend.queue_name})"
    try:
        policy = backend.queue_attributes(["RedrivePolicy"]).get("RedrivePolicy")
    except (BotoCoreError, ClientError) as error:
        return [
            checks.Warning(
                f"{where}: could not read the queue's redrive policy ({redact_text(str(error))}).",
                hint=unread_policy_hint(error),
                id="queues.W003",
            )
        ]
    if not policy:
        return [
            checks.Warning(
                f"{where} has no redrive policy: a message that can never run, or a task that"
                " failed MAX_ATTEMPTS times, has no dead-letter queue to go to and stays in the"
                " queue, received again after every visibility timeout.",
                hint=SETUP_HINT,
                id="queues.W001",
            )
        ]
    receives = int(json.loads(policy)["maxReceiveCount"])
    if receives < backend.max_attempts:
        return [
            checks.Warning(
                f"{where}: the redrive policy's maxReceiveCount ({receives}) is lower than"
                f" MAX_ATTEMPTS ({backend.max_attempts}): a task that kills its worker (its"
                " message is received again, not re-sent) gets fewer runs than one that raises.",
                hint=SETUP_HINT,
                id="queues.W002",
            )
        ]
    return []
