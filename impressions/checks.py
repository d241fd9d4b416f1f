"""System checks of the impressions app.

| id                 | when              | what                                                    |
| ------------------ | ----------------- | ------------------------------------------------------- |
| impressions.W001   | check --deploy    | the task backend cannot defer: every flush runs at once |
| impressions.W002   | check --deploy    | the task backend never runs tasks: nothing is flushed   |
"""

from django.core import checks
from django.tasks.backends.dummy import DummyBackend


@checks.register(checks.Tags.compatibility, deploy=True)
def check_flush_can_be_deferred(app_configs=None, **kwargs):
    from .tasks import flush_impressions_task

    backend = flush_impressions_task.get_backend()
    if isinstance(backend, DummyBackend):
        return [
            checks.Warning(
                "The task backend DummyBackend stores tasks and never runs them, so pending"
                " impressions reach the database only through manage.py flush_impressions.",
                hint="Set QUEUE_BACKEND to rq or sqs (see README, Queue backends).",
                id="impressions.W002",
            )
        ]
    if backend.supports_defer:
        return []
    return [
        checks.Warning(
            f"The task backend {type(backend).__name__} cannot defer tasks, so the impressions"
            " flush runs at once inside the request that schedules it.",
            hint="Set QUEUE_BACKEND to rq or sqs (see README, Queue backends).",
            id="impressions.W001",
        )
    ]
