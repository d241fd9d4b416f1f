"""System checks of the impressions app.

| id                 | when              | what                                                    |
| ------------------ | ----------------- | ------------------------------------------------------- |
| impressions.W001   | check --deploy    | the task backend cannot defer: every flush runs at once |
| impressions.W002   | check --deploy    | the task backend never runs tasks: nothing is flushed   |
| impressions.W003   | every command     | no VisitorCookieMiddleware: anonymous viewers by digest |
"""

from django.conf import settings
from django.core import checks
from django.tasks.backends.dummy import DummyBackend

from .conf import conf


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


VISITOR_COOKIE_MIDDLEWARE = "impressions.middleware.VisitorCookieMiddleware"


@checks.register(checks.Tags.compatibility)
def check_visitor_cookie_middleware(app_configs=None, **kwargs):
    if (
        not (conf.ENABLED and conf.COUNT_ANONYMOUS)
        or VISITOR_COOKIE_MIDDLEWARE in settings.MIDDLEWARE
    ):
        return []
    return [
        checks.Warning(
            "Anonymous visitors are counted, but no middleware sets their visitor cookie: every"
            " anonymous viewer is counted by the digest of its IP and User-Agent, so visitors"
            " behind one address with the same browser count as one.",
            hint=f"Add {VISITOR_COOKIE_MIDDLEWARE!r} to MIDDLEWARE.",
            id="impressions.W003",
        )
    ]
