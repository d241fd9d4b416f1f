"""manage.py queue_stats: the jobs or messages in each task backend's queues, by state."""

from django.core.management.base import BaseCommand

from queues.stats import all_backend_stats, describe


class Command(BaseCommand):
    help = (
        "Print, for each TASKS backend, its queues' numbers: RQ queued, scheduled, started and"
        " failed jobs; SQS visible, in-flight and delayed messages and the dead-letter queue's."
        " Exit code 1 when a backend's server could not be read."
    )
    requires_system_checks = []

    def handle(self, **options):
        unreachable = False
        for found in all_backend_stats():
            self.stdout.write(f"TASKS[{found.alias!r}] {found.backend}")
            if found.in_process:
                self.stdout.write(f"  {found.in_process_note}")
            elif found.error:
                unreachable = True
                self.stdout.write(f"  unreachable: {found.error}")
            for queue in found.queues:
                self.stdout.write(f"  {queue.queue}: {describe(queue.counts)}")
        if unreachable:
            raise SystemExit(1)
