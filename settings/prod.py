"""Production: every secret from the environment, no defaults for them, HTTPS everywhere."""

import os

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import BASE_DIR, LOG_FORMATS, LOGGING, RQ_REDIS_URL, rq_queues, task_settings
from .env import UNSET, env_bool, env_choice, env_database, env_hosts, env_int, env_str

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
# Django's check --deploy only warns (security.W009); a guessable key must not even start.
if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or SECRET_KEY.startswith("django-insecure-"):
    raise ImproperlyConfigured(
        "The environment variable SECRET_KEY must be a long random value (50+ characters, e.g."
        " python -c 'import secrets; print(secrets.token_urlsafe(50))')."
    )
DATABASES = {"default": env_database("DATABASE_URL")}
# No localhost default: the site's real host names, or every request is refused (400).
ALLOWED_HOSTS = env_hosts("ALLOWED_HOSTS")
if not ALLOWED_HOSTS:  # "" or "," would start a site that answers 400 to every request
    raise ImproperlyConfigured(
        "The environment variable ALLOWED_HOSTS names no host: give the site's host names,"
        " comma-separated (e.g. ALLOWED_HOSTS=casusult.example.com)."
    )
# No in-process default: the flush must run on a worker (rq or sqs), never inside a request.
TASKS = task_settings(UNSET)
RQ_QUEUES = rq_queues(TASKS, RQ_REDIS_URL)

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True

# Hashed, pre-compressed static files served by whitenoise; run collectstatic at build time.
STATIC_ROOT = env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles"))
# Empty, every page would fail on whitenoise's missing manifest; relative, collectstatic and the
# server would each read it from their own working directory.
if not os.path.isabs(STATIC_ROOT):
    raise ImproperlyConfigured(
        f"The environment variable STATIC_ROOT must be an absolute directory path (where"
        f" collectstatic puts the static files), not {STATIC_ROOT!r}."
    )
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

LOG_FORMAT = env_choice("LOG_FORMAT", LOG_FORMATS, "json")
LOGGING = {
    **LOGGING,
    "handlers": {"console": {**LOGGING["handlers"]["console"], "formatter": LOG_FORMAT}},
}
