"""manage.py rollup_impressions: roll the ended days up and prune the history, in the foreground."""

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from impressions.management.commands.flush_impressions import batch_size
from impressions.rollup import roll_up


class Command(BaseCommand):
    help = (
        "Move the ended days' history from the open rows to the daily, week and month rows, then"
        " delete the history older than IMPRESSIONS_HISTORY_DAYS, in batches. The flush schedules"
        " it by itself after midnight; run it from cron as a safety net. Safe to stop and rerun."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch-size",
            type=batch_size,
            default=None,
            help="rows per transaction (default: as many as fit in IMPRESSIONS_ROLLUP_BATCH_SECONDS, at most 2000)",
        )

    def handle(self, *args, batch_size=None, **options):
        try:
            report = roll_up(batch_size=batch_size)
        except DatabaseError as error:
            raise CommandError(f"could not roll up: {error}") from error
        if options["verbosity"]:
            self.stdout.write(str(report))
