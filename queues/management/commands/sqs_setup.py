"""manage.py sqs_setup: create the SQS queue and its dead-letter queue (idempotent)."""

import json

from django.core.management.base import BaseCommand, CommandError
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS

from queues.arguments import whole_number
from queues.extras import command_requires
from redis_endpoints import redact_text

DEFAULT_MAX_RECEIVE_COUNT = 5
DEFAULT_VISIBILITY_TIMEOUT = 60


class Command(BaseCommand):
    help = (
        "Create the SQS queue and its dead-letter queue with a redrive policy, or set those"
        " attributes again when they exist. Uses boto3's standard configuration"
        " (AWS_ENDPOINT_URL_SQS, AWS_DEFAULT_REGION, the credentials chain)."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--backend",
            help=f"the TASKS alias of the SQS backend whose queue, client and MAX_ATTEMPTS to use"
            f" (default: {DEFAULT_TASK_BACKEND_ALIAS!r}, when it is an SQS backend)",
        )
        parser.add_argument(
            "--queue-name", help="default: the SQS backend's queue (OPTIONS QUEUE_NAME/QUEUE_URL)"
        )
        parser.add_argument(
            "--dlq-name", help="default: the queue's own DLQ if it has one, else <queue name>-dlq"
        )
        parser.add_argument(
            "--max-receive-count",
            type=whole_number,
            help=f"receives before SQS moves a message to the DLQ (default: the queue's own, else"
            f" {DEFAULT_MAX_RECEIVE_COUNT}; never below the backend's MAX_ATTEMPTS)",
        )
        parser.add_argument(
            "--visibility-timeout",
            type=whole_number,
            help=f"seconds a received message stays hidden (default: the queue's own, else"
            f" {DEFAULT_VISIBILITY_TIMEOUT}; the worker extends it)",
        )

    def handle(
        self, *, backend, queue_name, dlq_name, max_receive_count, visibility_timeout, **options
    ):
        command_requires("sqs")  # then boto3 is there (the sqs extra): imported here, not above
        from botocore.exceptions import BotoCoreError, ClientError

        from queues.exceptions import QueueConfigurationError
        from queues.sqs.setup import (
            configured_backend,
            existing_settings,
            max_receive_count_floor,
            setup_queues,
            sqs_client,
        )

        alias = backend or DEFAULT_TASK_BACKEND_ALIAS
        configured = configured_backend(alias)
        if backend is not None and configured is None:
            raise CommandError(not_an_sqs_backend(backend))
        try:
            if configured:  # a bad QUEUE_URL would be taken for none ("No queue name")
                configured.ensure_valid()
        except QueueConfigurationError as error:
            raise CommandError(str(error)) from None
        queue_name = queue_name or (configured.queue_name if configured else None)
        if not queue_name:
            raise CommandError(
                f"No queue name: pass --queue-name, or give the SQS backend's OPTIONS a QUEUE_NAME"
                f" (or QUEUE_URL); TASKS[{alias!r}] is not an SQS backend, pass --backend ALIAS"
                f" for another one."
            )
        client = sqs_client(configured)
        try:
            dlq_name, max_receive_count, visibility_timeout = self.choose(
                existing_settings(client, queue_name),
                dlq_name,
                max_receive_count,
                visibility_timeout,
                max_receive_count_floor(configured),
            )
            queue, dlq = setup_queues(
                client,
                queue_name,
                dlq_name=dlq_name,
                max_receive_count=max_receive_count,
                visibility_timeout=visibility_timeout,
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
        except (BotoCoreError, ClientError) as error:
            raise CommandError(
                f"SQS refused or is unreachable: {redact_text(str(error))}"
            ) from None
        self.stdout.write(dlq.describe("dead-letter queue"))
        self.stdout.write(queue.describe("queue"))
        redrive = json.loads(queue.attributes["RedrivePolicy"])
        self.stdout.write(
            f"  redrive: after {redrive['maxReceiveCount']} receives to {dlq.name};"
            f" visibility timeout {queue.attributes['VisibilityTimeout']} s"
        )
        # The URL alone on the last line, for scripts; the settings' name for it just above (a
        # project's settings may map an environment variable of their own to it).
        setting = f"TASKS[{alias!r}]['OPTIONS']['QUEUE_URL']"
        self.stdout.write(f"Set {setting} (or the variable your settings read it from) to:")
        self.stdout.write(queue.url)

    def choose(self, existing, dlq_name, max_receive_count, visibility_timeout, floor):
        """(DLQ name, maxReceiveCount, visibility timeout): the options given, else what the
        queue has (`existing`, from existing_settings), else the defaults; maxReceiveCount never
        below `floor` (MAX_ATTEMPTS)."""
        kept_dlq, kept_receives, kept_visibility = existing
        if dlq_name is None and kept_dlq:
            dlq_name = kept_dlq
            self.stdout.write(
                f"keeping the queue's dead-letter queue {kept_dlq} (--dlq-name changes it)"
            )
        source = "--max-receive-count"
        if max_receive_count is None:
            source = "the queue's maxReceiveCount" if kept_receives else ""
            max_receive_count = kept_receives or DEFAULT_MAX_RECEIVE_COUNT
        if 1 <= max_receive_count < floor:
            if source:
                self.stdout.write(
                    f"{source} {max_receive_count} is below the backend's MAX_ATTEMPTS;"
                    f" using {floor}"
                )
            max_receive_count = floor
        if visibility_timeout is None:
            visibility_timeout = kept_visibility or DEFAULT_VISIBILITY_TIMEOUT
        return dlq_name, max_receive_count, visibility_timeout


def not_an_sqs_backend(alias):
    """Why --backend `alias` names no SQS backend configured_backend() could load."""
    from django.conf import settings

    if alias not in settings.TASKS:
        return (
            f"TASKS has no backend {alias!r} (its aliases: {', '.join(map(repr, settings.TASKS))})."
        )
    return f"TASKS[{alias!r}] is not an SQS backend ({settings.TASKS[alias].get('BACKEND')})."
