from django.apps import AppConfig


class QueuesConfig(AppConfig):
    name = "queues"
    verbose_name = "Queues"

    def ready(self):
        from django.conf import settings
        from django.tasks import task_backends

        from . import checks  # noqa: F401  (registers the deploy check)

        # Build every backend now so that a bad OPTIONS key or a missing queue fails start-up
        # (every manage.py command, the WSGI app) rather than the first enqueue. No network here.
        for alias in settings.TASKS:
            task_backends[alias]
