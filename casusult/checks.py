"""The site's system checks of what its environment variables set in the apps' settings."""

import os

from django.conf import settings
from django.core import checks
from django.tasks import task_backends
from django.tasks.exceptions import InvalidTaskBackend

from redis_endpoints import redact_text


def check_task_option_variables(app_configs=None, **kwargs):
    """casusult.E002: an environment variable set a TASKS option that its backend refuses.

    The backend's own check (queues.E005) names the OPTIONS key only: it cannot know where the
    value came from. This one names the variable the operator set, the option it sets and what
    the backend accepts, read from the backend's rules (the limits live in the app only).
    """
    errors = []
    for alias, params in settings.TASKS.items():
        variables = getattr(settings, "TASK_OPTION_VARIABLES", {}).get(params.get("BACKEND"), {})
        options = params.get("OPTIONS", {})
        try:
            rules = getattr(task_backends[alias], "option_rules", {})
        except InvalidTaskBackend:
            continue  # Django's own check reports it
        for key, variable in variables.items():
            if variable not in os.environ or key not in options or key not in rules:
                continue
            valid, expected = rules[key]
            if not valid(options[key]):
                errors.append(
                    checks.Error(
                        f"The environment variable {variable}="
                        f"{redact_text(repr(os.environ[variable].strip()))}"
                        f" sets TASKS[{alias!r}]['OPTIONS'][{key!r}], which must be {expected}.",
                        hint=f"Correct {variable}, or unset it for the backend's default.",
                        id="casusult.E002",
                    )
                )
    return errors
