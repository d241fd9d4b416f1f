"""manage.py sqs_redrive: move messages from an SQS backend's dead-letter queue back to its queue."""

from django.core.management.base import BaseCommand, CommandError
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends
from django.tasks.exceptions import InvalidTaskBackend

from queues.arguments import positive_int
from queues.extras import command_requires
from redis_endpoints import redact_text


class Command(BaseCommand):
    help = (
        "Move the messages of the SQS backend's dead-letter queue (its queue's RedrivePolicy) back"
        " to the queue, after a fix: SQS's StartMessageMoveTask where the server has it, else"
        " receive, send, delete. Running it again moves only what is still there."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--backend", default=DEFAULT_TASK_BACKEND_ALIAS, help="TASKS alias")
        parser.add_argument(
            "--max",
            type=positive_int,
            dest="max_messages",
            metavar="N",
            help="move N messages at most (always receive/send/delete)",
        )

    def handle(self, *, backend, max_messages, **options):
        command_requires("sqs")  # then boto3 is there (the sqs extra): imported here, not above
        from botocore.exceptions import BotoCoreError, ClientError

        from queues.sqs.backend import SQSBackend
        from queues.sqs.deadletter import redrive

        try:
            sqs = task_backends[backend]
        except InvalidTaskBackend as error:
            raise CommandError(str(error)) from None
        if not isinstance(sqs, SQSBackend):
            raise CommandError(f"TASKS[{backend!r}] uses {type(sqs).__name__}, not SQSBackend.")
        try:
            attributes = sqs.queue_attributes(["QueueArn", "RedrivePolicy"])
            dlq = sqs.dead_letter_queue(attributes)
            if dlq is None:
                raise CommandError(
                    f"The SQS queue {sqs.queue_name} has no redrive policy, so no dead-letter"
                    " queue to move messages from (manage.py sqs_setup sets one)."
                )
            report = redrive(
                sqs.client, sqs.queue_url, attributes["QueueArn"], dlq, max_messages=max_messages
            )
        except (BotoCoreError, ClientError) as error:
            raise CommandError(
                f"SQS refused or is unreachable: {redact_text(str(error))}"
            ) from None
        route = f"from {dlq.name} to {sqs.queue_name}"
        if report.already_running:
            self.stdout.write(f"A message move task {route} is already running: {report.move_task}")
        elif report.move_task:
            self.stdout.write(
                f"Started a message move task {route}: {report.move_task} (SQS moves the"
                " messages in the background; `manage.py queue_stats` shows the DLQ empty out)"
            )
        else:
            self.stdout.write(f"Moved {report.moved} message(s) {route}")
