"""django-rq commands that cannot work with our RQ jobs, shadowed by ones that say what to use.

Django takes a command from the first app in INSTALLED_APPS that has it: `queues` comes before
`django_rq`, so these replace django-rq's own.
"""

from django.core.management.base import BaseCommand, CommandError


def disabled_command(name, reason):
    """A Command class for `manage.py name` that only fails, saying `reason`."""

    class Command(BaseCommand):
        help = f"Disabled in this project: {reason}"

        def add_arguments(self, parser):
            parser.add_argument("args", nargs="*", help="ignored")

        def handle(self, *args, **options):
            raise CommandError(f"manage.py {name} is disabled in this project: {reason}")

    return Command
