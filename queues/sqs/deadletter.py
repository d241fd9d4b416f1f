"""The dead-letter queue, found from the queue's RedrivePolicy: messages moved there, and back.

Moving means sending first, deleting second. Interrupted between the two, a message is in both
queues, never in neither: at least once, like everything else on SQS.
"""

import json
from dataclasses import dataclass

from botocore.exceptions import ClientError

# Message attributes the worker adds to what it moves to the DLQ (SQS keeps them on a redrive).
REASON_ATTRIBUTE = "queues.reason"
SOURCE_ATTRIBUTE = "queues.source-message-id"
# Seconds a message received from the DLQ stays hidden while sqs_redrive moves it.
REDRIVE_VISIBILITY = 60
# Answers of a server without StartMessageMoveTask (moto answers 500, others an unknown action).
UNSUPPORTED_CODES = {
    "InvalidAction",
    "UnknownOperation",
    "UnknownOperationException",
    "NotImplemented",
    "UnsupportedOperation",
}


@dataclass(frozen=True)
class DeadLetterQueue:
    """The DLQ a queue's RedrivePolicy names."""

    url: str
    arn: str
    name: str
    max_receive_count: int


def redrive_policy(attributes):
    """(its DLQ's ARN, account, name, maxReceiveCount or None) of a queue's RedrivePolicy
    attribute, or None when it has none."""
    policy = json.loads(attributes.get("RedrivePolicy") or "{}")
    arn = policy.get("deadLetterTargetArn")
    if not arn:
        return None
    # arn:aws:sqs:<region>:<account>:<name>
    account, name = arn.split(":")[4:6]
    receives = policy.get("maxReceiveCount")
    return arn, account, name, int(receives) if receives is not None else None


def dead_letter_queue(client, attributes):
    """The DLQ named by a queue's attributes (its RedrivePolicy), or None when it has none."""
    if (policy := redrive_policy(attributes)) is None:
        return None
    arn, account, name, max_receive_count = policy
    url = client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
    return DeadLetterQueue(url, arn, name, max_receive_count)


def printable(text, limit=500):
    """`text` as an SQS attribute value: characters SQS accepts, at most `limit` of them."""
    return "".join(c if c.isprintable() else "?" for c in str(text))[:limit]


def dead_letter(client, queue_url, dlq, message, reason, body=None):
    """Move `message` (with `body` in place of its own, if given) to `dlq`, saying why."""
    client.send_message(
        QueueUrl=dlq.url,
        MessageBody=body or message["Body"],
        MessageAttributes={
            REASON_ATTRIBUTE: {"DataType": "String", "StringValue": printable(reason)},
            SOURCE_ATTRIBUTE: {"DataType": "String", "StringValue": message["MessageId"]},
        },
    )
    client.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


@dataclass
class RedriveReport:
    moved: int = 0  # messages this call moved itself (receive, send, delete)
    move_task: str | None = None  # the handle of an SQS message move task, started or running
    already_running: bool = False  # that task was running before this call


def redrive(client, queue_url, queue_arn, dlq, max_messages=None):
    """Move messages from `dlq` back to the queue: all of them, or `max_messages` at most.

    Without a limit, SQS's own StartMessageMoveTask does it where the server has it (a task
    already running is reported, not started twice); otherwise, and with a limit (which
    StartMessageMoveTask cannot express), receive, send, delete: a message is deleted from the
    DLQ only once it was sent to the queue.
    """
    if max_messages is None:
        try:
            return start_move_task(client, queue_arn, dlq)
        except ClientError as error:
            if not move_task_unsupported(error):
                raise
    report = RedriveReport()
    # At most what the DLQ holds now: a message a running worker sets aside again would come
    # back and be moved again, for ever (and --max would count it twice). What comes back, or
    # what SQS's approximate count missed, waits for the next run.
    limit = waiting(client, dlq.url)
    if max_messages is not None:
        limit = min(limit, max_messages)
    while report.moved < limit:
        wanted = min(10, limit - report.moved)
        messages = client.receive_message(
            QueueUrl=dlq.url,
            MaxNumberOfMessages=wanted,
            WaitTimeSeconds=1,
            VisibilityTimeout=REDRIVE_VISIBILITY,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            attributes = {
                name: value
                for name, value in message.get("MessageAttributes", {}).items()
                if name not in (REASON_ATTRIBUTE, SOURCE_ATTRIBUTE)
            }
            send = {"QueueUrl": queue_url, "MessageBody": message["Body"]}
            client.send_message(**send, **({"MessageAttributes": attributes} if attributes else {}))
            client.delete_message(QueueUrl=dlq.url, ReceiptHandle=message["ReceiptHandle"])
            report.moved += 1
    return report


def waiting(client, url):
    """The messages of queue `url` now: visible, in flight and delayed (approximate)."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    found = client.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(found.get(name, 0)) for name in names)


def start_move_task(client, queue_arn, dlq):
    """StartMessageMoveTask from `dlq` to the queue, unless one is running already."""
    tasks = client.list_message_move_tasks(SourceArn=dlq.arn, MaxResults=1).get("Results", [])
    if tasks and tasks[0].get("Status") == "RUNNING":
        return RedriveReport(move_task=tasks[0].get("TaskHandle"), already_running=True)
    answer = client.start_message_move_task(SourceArn=dlq.arn, DestinationArn=queue_arn)
    return RedriveReport(move_task=answer["TaskHandle"])


def move_task_unsupported(error):
    """Whether `error` says the server has no message move tasks (rather than refusing ours)."""
    response = error.response
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return response.get("Error", {}).get("Code") in UNSUPPORTED_CODES or status in (500, 501)
