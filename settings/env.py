"""Typed readers for environment variables; a bad value fails start-up naming the variable.

They check that a value parses (a number, a boolean, a URL); the apps' system checks judge
whether it is in range, naming the setting (the same name where a variable maps to a setting).
"""

import os

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from redis_endpoints import redact, redact_text

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}
UNSET = object()


def _raw(name, default):
    value = os.environ.get(name)
    if value is None:
        if default is UNSET:
            raise ImproperlyConfigured(f"The environment variable {name} is required.")
        return None
    return value.strip()


def env_str(name, default=UNSET):
    value = _raw(name, default)
    return default if value is None else value


def env_bool(name, default=UNSET):
    value = _raw(name, default)
    if value is None:
        return default
    if value.lower() in TRUE_WORDS:
        return True
    if value.lower() in FALSE_WORDS:
        return False
    raise ImproperlyConfigured(
        f"The environment variable {name}={value!r} is not a boolean (use true or false)."
    )


def env_int(name, default=UNSET, *, minimum=None, maximum=None):
    value = _raw(name, default)
    if value is None:
        return default
    try:
        if not value.isascii():  # int() would take other scripts' digits
            raise ValueError(value)
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(
            f"The environment variable {name}={value!r} is not a whole number."
        ) from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ImproperlyConfigured(f"The environment variable {name}={number} must be {bounds}.")
    return number


def env_float(name, default=UNSET, *, minimum=None, maximum=None):
    value = _raw(name, default)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(
            f"The environment variable {name}={value!r} is not a number."
        ) from None
    if number != number:  # nan
        raise ImproperlyConfigured(f"The environment variable {name}={value!r} is not a number.")
    if minimum is not None and not number >= minimum:
        raise ImproperlyConfigured(
            f"The environment variable {name}={number} must be >= {minimum}."
        )
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(
            f"The environment variable {name}={number} must be <= {maximum}."
        )
    return number


def env_list(name, default=UNSET):
    value = _raw(name, default)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_choice(name, choices, default=UNSET):
    value = _raw(name, default)
    if value is None:
        return default
    if value.lower() not in choices:
        raise ImproperlyConfigured(
            f"The environment variable {name}={value!r} is not one of: {', '.join(sorted(choices))}."
        )
    return value.lower()


def env_database(name="DATABASE_URL", default=UNSET):
    value = _raw(name, default)
    url = default if value is None else value
    try:
        config = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    except ValueError as error:
        raise ImproperlyConfigured(
            f"The environment variable {name} is malformed: {redact_text(str(error))}"
        ) from None
    if not config.get("ENGINE"):
        raise ImproperlyConfigured(
            f"The environment variable {name}={redact(url)!r} names no known database."
        )
    return config


def env_redis_url(name, default=UNSET):
    value = _raw(name, default)
    url = default if value is None else value
    if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(
            f"The environment variable {name}={redact(url)!r} must be a redis://, rediss:// or"
            " unix:// URL."
        )
    return url


def from_env(readers, prefix=""):
    """{key: value} for each key of `readers` whose variable (prefix + key) is set, read by its
    reader. A variable left unset sets nothing, so the app's own default applies."""
    return {
        key: reader(prefix + key) for key, reader in readers.items() if prefix + key in os.environ
    }
