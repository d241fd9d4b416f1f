"""Settings shared by every environment; each value comes from the environment (12-factor)."""

import warnings
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_choice, env_float, env_int, env_list, env_redis_url, env_str

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
    "queues",
]

MIDDLEWARE = [
    # First: load balancers probe by IP over plain HTTP, before host validation and HTTPS redirects.
    "casusult.health.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files from the app server itself (collectstatic); no separate web server needed.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
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

# The impression buffer (and, unless RQ_REDIS_URL says otherwise, the RQ queue).
REDIS_URL = env_redis_url("REDIS_URL", "redis://127.0.0.1:6379/0")

# Impressions (impressions/conf.py reads these; README "Impressions" explains each).
# What is counted: the flush adds to this integer field of this model (checked at start-up).
IMPRESSIONS_MODEL = "casusult.Post"
IMPRESSIONS_COUNT_FIELD = "impressions"
# Upper bounds keep values inside what Redis (EXPIRE) and datetime arithmetic accept.
ONE_YEAR = 365 * 24 * 3600
IMPRESSIONS_DEDUP_WINDOW = env_int("IMPRESSIONS_DEDUP_WINDOW", 300, maximum=ONE_YEAR)
IMPRESSIONS_FLUSH_DELAY = env_int("IMPRESSIONS_FLUSH_DELAY", 300, maximum=ONE_YEAR)
IMPRESSIONS_FLUSH_BATCH_SIZE = env_int(
    "IMPRESSIONS_FLUSH_BATCH_SIZE", 5000, minimum=1, maximum=1_000_000
)
IMPRESSIONS_REDIS_TIMEOUT = env_float(
    "IMPRESSIONS_REDIS_TIMEOUT", 0.05, minimum=0.001, maximum=3600
)
IMPRESSIONS_FLUSH_REDIS_TIMEOUT = env_float(
    "IMPRESSIONS_FLUSH_REDIS_TIMEOUT", 10.0, minimum=0.001, maximum=3600
)
IMPRESSIONS_REDIS_CLUSTER = env_choice(
    "IMPRESSIONS_REDIS_CLUSTER", {"auto", "true", "false"}, "auto"
)
IMPRESSIONS_COUNT_ANONYMOUS = env_bool("IMPRESSIONS_COUNT_ANONYMOUS", True)
IMPRESSIONS_KEY_PREFIX = env_str("IMPRESSIONS_KEY_PREFIX", "imp")
IMPRESSIONS_SHARDS = env_int("IMPRESSIONS_SHARDS", 16, minimum=1, maximum=1024)
IMPRESSIONS_LEDGER_RETENTION_DAYS = env_int(
    "IMPRESSIONS_LEDGER_RETENTION_DAYS", 30, minimum=1, maximum=36500
)
# Days of per-day history the flush keeps (the dashboard's charts and top posts); 0 keeps all.
IMPRESSIONS_HISTORY_DAYS = env_int("IMPRESSIONS_HISTORY_DAYS", 400, minimum=0, maximum=36500)


def task_settings(default_backend, rq_url):
    """TASKS["default"] from QUEUE_BACKEND (rq, sqs, immediate, dummy) and that backend's variables."""
    choice = env_choice("QUEUE_BACKEND", {"rq", "sqs", "immediate", "dummy"}, default_backend)
    if choice == "rq":
        options = {
            "URL": rq_url,
            "JOB_TIMEOUT": env_int("RQ_JOB_TIMEOUT", 600, minimum=1),
        }
        return {"default": {"BACKEND": "queues.rq.backend.RQBackend", "OPTIONS": options}}
    if choice == "sqs":
        queue_url, queue_name = env_str("SQS_QUEUE_URL", ""), env_str("SQS_QUEUE_NAME", "")
        if not (queue_url or queue_name):
            raise ImproperlyConfigured(
                "QUEUE_BACKEND=sqs needs the environment variable SQS_QUEUE_URL or SQS_QUEUE_NAME."
            )
        options = {
            "QUEUE_URL": queue_url or None,
            "QUEUE_NAME": queue_name or None,
            "WAIT_TIME_SECONDS": env_int("SQS_WAIT_TIME_SECONDS", 20, maximum=20),
            "MAX_MESSAGES": env_int("SQS_MAX_MESSAGES", 10, minimum=1, maximum=10),
            "VISIBILITY_TIMEOUT": env_int("SQS_VISIBILITY_TIMEOUT", 60, minimum=1, maximum=43200),
            "JOB_TIMEOUT": env_int("SQS_JOB_TIMEOUT", 600, minimum=1, maximum=43200),
        }
        return {"default": {"BACKEND": "queues.sqs.backend.SQSBackend", "OPTIONS": options}}
    backend = f"django.tasks.backends.{choice}.{choice.title()}Backend"
    return {"default": {"BACKEND": backend}}


# The RQ queue's Redis: standalone only (RQ refuses cluster mode, see queues.rq.cluster).
RQ_REDIS_URL = env_redis_url("RQ_REDIS_URL", REDIS_URL)
# Production picks rq or sqs; without QUEUE_BACKEND tasks run in-process.
TASKS = task_settings("immediate", RQ_REDIS_URL)

# Seconds /readyz waits for all its dependency probes together (casusult/health.py).
READINESS_TIMEOUT = env_float("READINESS_TIMEOUT", 1.0, minimum=0.05)

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
# plain for people, json (one object per line, casusult.jsonlog) for log pipelines; prod: json.
LOG_FORMATS = {"plain", "json"}
LOG_FORMAT = env_choice("LOG_FORMAT", LOG_FORMATS, "plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "casusult.jsonlog.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own console handler (DEBUG only, no time stamp) printed every django.* line a
        # second time next to ours; they reach the root handler alone. django.server keeps its own.
        "django": {"handlers": [], "level": LOG_LEVEL},
        "django.db.backends": {"level": "INFO"},
    },
}
