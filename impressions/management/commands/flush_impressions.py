from django.core.management.base import BaseCommand, CommandError

from casusult.arguments import positive_int
from impressions.exceptions import FlushError
from impressions.flush import flush_pending


class Command(BaseCommand):
    help = (
        "Flush pending impressions from Redis to the database now, in the foreground (for cron"
        " or EventBridge); also recovers snapshots left by crashed flushes. Exits 1 on failure."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=None,
            help="posts per UPDATE statement (default: IMPRESSIONS_FLUSH_BATCH_SIZE)",
        )

    def handle(self, *args, batch_size=None, **options):
        try:
            report = flush_pending(batch_size=batch_size)
        except FlushError as error:
            raise CommandError(f"could not flush: {error}") from error
        self.stdout.write(str(report))
