"""Settings shared by every environment; each value comes from the environment (12-factor)."""

import os
import warnings
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from .env import (
    LOG_LEVELS,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_redis_url,
    env_str,
    from_env,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "casusult",
    "impressions",
    # Before django_rq: queues' commands shadow the django-rq commands that cannot run our jobs.
    "queues",
    # django-rq's dashboard (mounted at /admin/rq/ by casusult.urls) over the RQ backend's Redis.
    "django_rq",
]

MIDDLEWARE = [
    # First: load balancers probe by IP over plain HTTP, before host validation and HTTPS redirects.
    "casusult.health.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy (SECURE_CSP below) with a per-response nonce for the admin's scripts.
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    # Permissions-Policy (PERMISSIONS_POLICY below).
    "casusult.security.PermissionsPolicyMiddleware",
    # Static files from the app server itself (collectstatic); no separate web server needed.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Sets the visitor cookie of a new anonymous viewer (impressions/viewers.py); no session.
    "impressions.middleware.VisitorCookieMiddleware",
    # A NUL byte in an admin URL, "view on site" of a model without pages: a 4xx, not a 500.
    "casusult.security.AdminMalformedRequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "casusult.urls"
WSGI_APPLICATION = "casusult.wsgi.application"
ASGI_APPLICATION = "casusult.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                # csp_nonce for {% csp_nonce_attr %} (the admin's and our templates' scripts).
                "django.template.context_processors.csp",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Content-Security-Policy, in every environment (the browser tests see what production sends):
# scripts and styles only from this site's static files, or inline with this response's nonce;
# no inline handlers, no style attributes, no plugins, no framing, forms post only here.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF],
    "font-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
# Permissions-Policy (casusult.security): no page of this site uses a powerful browser feature,
# so none is allowed, to the site or to anything it might embed. feature -> allowed origins.
PERMISSIONS_POLICY = {
    feature: []
    for feature in (
        "accelerometer",
        "autoplay",
        "camera",
        "display-capture",
        "encrypted-media",
        "fullscreen",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "picture-in-picture",
        "publickey-credentials-get",
        "screen-wake-lock",
        "usb",
        "xr-spatial-tracking",
    )
}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "timeline"
LOGOUT_REDIRECT_URL = "timeline"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Dev and tests run without collectstatic; whitenoise's warning about the missing STATIC_ROOT is
# expected there (prod builds it; the load test and make serve run collectstatic).
warnings.filterwarnings("ignore", message=r"No directory at: .*staticfiles")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The site's environment variables for the two apps. Each maps to a setting only when it is set:
# the defaults and limits live in the apps (impressions/conf.py, the queue backends' OPTIONS) and
# their system checks judge the values (docs/impressions/settings.md, docs/queues/settings.md).

# REDIS_URL: the impression buffer's Redis (and, unless RQ_REDIS_URL says otherwise, the RQ queue's).
redis_url = env_redis_url("REDIS_URL", None)  # lower case: no Django setting of its own
if redis_url is not None:
    IMPRESSIONS_REDIS_URL = redis_url
# What is counted: the flush adds to this integer field of this model (checked at start-up).
IMPRESSIONS_MODEL = "casusult.Post"
IMPRESSIONS_COUNT_FIELD = "impressions"
# The site shows the task queues' numbers on the impressions dashboard (impressions cannot import
# queues; the site can).
IMPRESSIONS_DASHBOARD_PANELS = ["casusult.dashboard_panels.queue_panel"]
# What changes between deployments: the kill switch (false records nothing), the proxies in front
# (an ALB: 1), the record call's time budget, the buffer's mode, the windows (the load test shortens
# them), the history kept, the invalid-traffic budgets (the load test's clients all come from one
# address).
globals().update(
    from_env(
        {
            "IMPRESSIONS_ENABLED": env_bool,
            "IMPRESSIONS_TRUSTED_PROXIES": env_int,
            "IMPRESSIONS_REDIS_TIMEOUT": env_float,
            "IMPRESSIONS_REDIS_CLUSTER": env_str,
            "IMPRESSIONS_DEDUP_WINDOW": env_int,
            "IMPRESSIONS_FLUSH_DELAY": env_int,
            "IMPRESSIONS_FLUSH_PARTS": env_int,
            "IMPRESSIONS_HISTORY_DAYS": env_int,
            "IMPRESSIONS_IP_NEW_VIEWERS_PER_HOUR": env_int,
            "IMPRESSIONS_VIEWER_IMPRESSIONS_PER_HOUR": env_int,
        }
    )
)

RQ_BACKEND = "queues.rq.backend.RQBackend"
SQS_BACKEND = "queues.sqs.backend.SQSBackend"
# Where `make run`'s Redis listens (devservices), for the RQ queue when no variable names one.
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"


# TASKS["default"]["OPTIONS"] key -> (the variable that sets it, its reader), by backend (lower
# case: no Django settings of their own). The site's check casusult.E002 names the variable of a
# value the backend's rules refuse.
shared_option_variables = {
    "MAX_ATTEMPTS": ("TASKS_MAX_ATTEMPTS", env_int),
    "RETRY_DELAY": ("TASKS_RETRY_DELAY", env_int),
    "TASK_MODULES": ("TASK_MODULES", env_list),
}
rq_option_variables = {**shared_option_variables, "JOB_TIMEOUT": ("RQ_JOB_TIMEOUT", env_int)}
sqs_option_variables = {
    **shared_option_variables,
    "QUEUE_URL": ("SQS_QUEUE_URL", env_str),
    "QUEUE_NAME": ("SQS_QUEUE_NAME", env_str),
    "WAIT_TIME_SECONDS": ("SQS_WAIT_TIME_SECONDS", env_int),
    "MAX_MESSAGES": ("SQS_MAX_MESSAGES", env_int),
    "VISIBILITY_TIMEOUT": ("SQS_VISIBILITY_TIMEOUT", env_int),
    "JOB_TIMEOUT": ("SQS_JOB_TIMEOUT", env_int),
}
# The same, without the readers, for that check: {backend path: {OPTIONS key: variable}}.
TASK_OPTION_VARIABLES = {
    backend: {key: variable for key, (variable, _) in variables.items()}
    for backend, variables in (
        (RQ_BACKEND, rq_option_variables),
        (SQS_BACKEND, sqs_option_variables),
    )
}


def options_from_env(variables):
    """{OPTIONS key: value} of each of `variables` that is set (unset: the backend's default)."""
    return {
        key: reader(variable)
        for key, (variable, reader) in variables.items()
        if variable in os.environ
    }


def task_settings(default_backend, task_modules=()):
    """TASKS["default"] from QUEUE_BACKEND (rq, sqs, immediate, dummy) and that backend's variables.

    `task_modules`: the site's TASK_MODULES when the variable is unset, modules whose tasks the
    workers register besides the installed apps' tasks modules.
    """
    choice = env_choice("QUEUE_BACKEND", {"rq", "sqs", "immediate", "dummy"}, default_backend)
    if choice == "rq":
        options = {**task_modules_option(task_modules), **options_from_env(rq_option_variables)}
        return {"default": {"BACKEND": RQ_BACKEND, "QUEUES": ["default"], "OPTIONS": options}}
    if choice == "sqs":
        options = {**task_modules_option(task_modules), **options_from_env(sqs_option_variables)}
        if not (options.get("QUEUE_URL") or options.get("QUEUE_NAME")):
            raise ImproperlyConfigured(
                "QUEUE_BACKEND=sqs needs the environment variable SQS_QUEUE_URL or SQS_QUEUE_NAME."
            )
        return {"default": {"BACKEND": SQS_BACKEND, "OPTIONS": options}}
    backend = f"django.tasks.backends.{choice}.{choice.title()}Backend"
    return {"default": {"BACKEND": backend}}


def task_modules_option(task_modules):
    return {"TASK_MODULES": list(task_modules)} if task_modules else {}


def rq_queues(tasks, url):
    """django-rq's RQ_QUEUES: the one definition of the RQ connection, for the RQ backend of
    `tasks` and django-rq's dashboard. The JSON serializer is the one the backend writes (the
    queues app's checks refuse any other). Empty without an RQ backend: the dashboard then shows
    no queue rather than poking at the impression buffer's Redis."""
    names = {
        name
        for params in tasks.values()
        if params["BACKEND"] == RQ_BACKEND
        for name in params.get("QUEUES", ["default"])
    }
    return {name: {"URL": url, "SERIALIZER": "rq.serializers.JSONSerializer"} for name in names}


# The RQ queue's Redis: standalone only (RQ refuses cluster mode, see queues.rq.cluster).
RQ_REDIS_URL = env_redis_url("RQ_REDIS_URL", redis_url or LOCAL_REDIS_URL)
# Production picks rq or sqs; without QUEUE_BACKEND tasks run in-process.
TASKS = task_settings("immediate")
RQ_QUEUES = rq_queues(TASKS, RQ_REDIS_URL)
# django-rq: anything it builds resolves job functions through our job class, which runs only
# our trampoline.
RQ = {"JOB_CLASS": "queues.rq.worker.TaskJob"}
# casusult.urls mounts the dashboard at /admin/rq/, linked from the queue status admin page.
RQ_SHOW_ADMIN_LINK = False

# Seconds /readyz waits for all its dependency probes together (casusult/health.py has the default).
globals().update(from_env({"READINESS_TIMEOUT": lambda name: env_float(name, minimum=0.05)}))
# Addresses (CIDR, comma-separated) that see /readyz's details; casusult/health.py: loopback.
globals().update(from_env({"HEALTH_DETAIL_NETWORKS": env_list}))

LOG_LEVEL = env_choice("LOG_LEVEL", LOG_LEVELS, "info").upper()
# plain for people, json (one object per line, casusult.jsonlog) for log pipelines; prod: json.
LOG_FORMATS = {"plain", "json"}
LOG_FORMAT = env_choice("LOG_FORMAT", LOG_FORMATS, "plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        # Both hide credentials in any URL a line carries (a traceback's connection string too).
        "plain": {
            "()": "casusult.jsonlog.PlainFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {"()": "casusult.jsonlog.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own console handler (DEBUG only, no time stamp) printed every django.* line a
        # second time next to ours; they reach the root handler alone. django.server keeps its own.
        "django": {"handlers": [], "level": LOG_LEVEL},
        "django.db.backends": {"level": "INFO"},
        # boto3 and botocore say at INFO where they found credentials and endpoints, two lines on
        # every command that builds an SQS client; their warnings and errors still show.
        "boto3": {"level": "WARNING"},
        "botocore": {"level": "WARNING"},
    },
}
