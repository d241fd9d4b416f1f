"""System checks of the impressions app.

| id                 | when              | what                                                    |
| ------------------ | ----------------- | ------------------------------------------------------- |
| impressions.E001   | every check       | IMPRESSIONS_MODEL missing, malformed or not installed   |
| impressions.E002   | every check       | IMPRESSIONS_COUNT_FIELD is not a field of that model    |
| impressions.E003   | every check       | IMPRESSIONS_COUNT_FIELD is not an integer field         |
| impressions.E004   | every check       | the counted model's primary key is not an integer       |
| impressions.W001   | check --deploy    | the task backend cannot defer: every flush runs at once |
| impressions.W002   | check --deploy    | the task backend never runs tasks: nothing is flushed   |
| impressions.E005   | every check       | an IMPRESSIONS_* setting has a bad value (one per setting) |
| impressions.W003   | every command     | no VisitorCookieMiddleware: anonymous viewers by digest |
| impressions.E006   | every check       | IMPRESSIONS_FLUSH_PARTS is more than IMPRESSIONS_SHARDS |

Never reuse a retired id.
"""

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.tasks.backends.dummy import DummyBackend

from .conf import conf, invalid_settings
from .tasks import flush_impressions_task


@checks.register()
def check_settings(app_configs=None, **kwargs):
    """Every IMPRESSIONS_* setting whose value is bad, each its own error (conf.SETTINGS)."""
    invalid = invalid_settings()
    errors = [
        checks.Error(
            f"{name}={value!r} is not valid.",
            hint=f"Use {expected}.",
            obj=name,
            id="impressions.E005",
        )
        for name, value, expected in invalid
    ]
    counted = {"IMPRESSIONS_FLUSH_PARTS", "IMPRESSIONS_SHARDS"}
    if not counted & {name for name, *_ in invalid} and conf.FLUSH_PARTS > conf.SHARDS:
        errors.append(
            checks.Error(
                f"IMPRESSIONS_FLUSH_PARTS={conf.FLUSH_PARTS} is more than"
                f" IMPRESSIONS_SHARDS={conf.SHARDS}: a part would have no shard to flush.",
                hint="Split the flush into at most as many parts as there are shards.",
                obj="IMPRESSIONS_FLUSH_PARTS",
                id="impressions.E006",
            )
        )
    return errors


@checks.register(checks.Tags.models)
def check_counted_model(app_configs=None, **kwargs):
    """IMPRESSIONS_MODEL names an installed model, IMPRESSIONS_COUNT_FIELD an integer field of it."""
    name = conf.MODEL
    try:
        if not isinstance(name, str) or name.count(".") != 1:
            raise ValueError
        model = apps.get_model(name)
    except (LookupError, ValueError):
        return [
            checks.Error(
                f"IMPRESSIONS_MODEL={name!r} does not name an installed model.",
                hint='Set IMPRESSIONS_MODEL to the counted model as "app_label.ModelName"'
                ' (e.g. "blog.Post"), with its app in INSTALLED_APPS.',
                id="impressions.E001",
            )
        ]
    # Viewers' sets and the flush's SQL hold ids as integers (bigint in PostgreSQL).
    if not isinstance(model._meta.pk, models.IntegerField):
        return [
            checks.Error(
                f"IMPRESSIONS_MODEL={name!r} has a {type(model._meta.pk).__name__} primary key;"
                " impressions are counted by integer ids.",
                hint="Count a model whose primary key is an AutoField or BigAutoField.",
                id="impressions.E004",
            )
        ]
    field_name = conf.COUNT_FIELD
    try:
        field = model._meta.get_field(field_name)
    except (FieldDoesNotExist, TypeError):
        return [
            checks.Error(
                f"IMPRESSIONS_COUNT_FIELD={field_name!r} is not a field of {name}.",
                hint=f"Add the field to {name} (e.g. models.PositiveBigIntegerField(default=0))"
                " or set IMPRESSIONS_COUNT_FIELD to the name of one it has.",
                id="impressions.E002",
            )
        ]
    # AutoField subclasses IntegerField too: counting into the primary key would corrupt it.
    if not isinstance(field, models.IntegerField) or field.primary_key:
        return [
            checks.Error(
                f"IMPRESSIONS_COUNT_FIELD={field_name!r} is a {type(field).__name__}"
                f"{' and the primary key' if field.primary_key else ''}: it cannot hold a count.",
                hint="Point IMPRESSIONS_COUNT_FIELD at an integer field that is not the primary"
                " key, e.g. models.PositiveBigIntegerField(default=0).",
                obj=field,
                id="impressions.E003",
            )
        ]
    return []


@checks.register(checks.Tags.compatibility, deploy=True)
def check_flush_can_be_deferred(app_configs=None, **kwargs):
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
