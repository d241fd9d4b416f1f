"""The queues app: registers the deploy check and builds every task backend at start-up."""

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.tasks import task_backends

from .checks import check_backend_servers


class QueuesConfig(AppConfig):
    name = "queues"
    verbose_name = "Queues"

    def ready(self):
        checks.register(check_backend_servers, checks.Tags.compatibility, deploy=True)
        # Build every backend now so that a bad OPTIONS key or a missing queue fails start-up
        # (every manage.py command, the WSGI app) rather than the first enqueue. No network here.
        for alias in settings.TASKS:
            task_backends[alias]
