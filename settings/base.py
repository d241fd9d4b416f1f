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
    # Before django_rq: queues' commands shadow the django-rq commands that cannot run our jobs.
    "queues",
    # django-rq's dashboard (mounted at /admin/rq/ by casusult.urls) over the RQ backend's Redis.
    "django_rq",
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
    # Sets the visitor cookie of a new anonymous viewer (impressions/viewers.py); no session.
    "impressions.middleware.VisitorCookieMiddleware",
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
# The site shows the task queues' numbers on the impressions dashboard (impressions cannot import
# queues; the site can).
IMPRESSIONS_DASHBOARD_PANELS = ["casusult.dashboard_panels.queue_panel"]
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
# The kill switch: false records nothing (no Redis call, no visitor cookie).
IMPRESSIONS_ENABLED = env_bool("IMPRESSIONS_ENABLED", True)
# None (unset): the app's default pattern of crawlers, previews and monitors; "" ignores none.
IMPRESSIONS_IGNORE_USER_AGENTS = env_str("IMPRESSIONS_IGNORE_USER_AGENTS", None)
# Proxies in front of the site that append to X-Forwarded-For (an ALB: 1); 0 uses REMOTE_ADDR.
IMPRESSIONS_TRUSTED_PROXIES = env_int("IMPRESSIONS_TRUSTED_PROXIES", 0, maximum=32)
IMPRESSIONS_VISITOR_COOKIE_NAME = env_str("IMPRESSIONS_VISITOR_COOKIE_NAME", "visitor")
IMPRESSIONS_VISITOR_COOKIE_AGE = env_int(
    "IMPRESSIONS_VISITOR_COOKIE_AGE", 365 * 24 * 3600, minimum=1, maximum=400 * 24 * 3600
)
# None (unset): Secure exactly when the session cookie is (settings.prod: always).
IMPRESSIONS_VISITOR_COOKIE_SECURE = env_bool("IMPRESSIONS_VISITOR_COOKIE_SECURE", None)
# Days of per-day history the flush keeps (the dashboard's charts and top posts); 0 keeps all.
IMPRESSIONS_HISTORY_DAYS = env_int("IMPRESSIONS_HISTORY_DAYS", 400, minimum=0, maximum=36500)


RQ_BACKEND = "queues.rq.backend.RQBackend"


def task_settings(default_backend, rq_url, task_modules=()):
    """TASKS["default"] from QUEUE_BACKEND (rq, sqs, immediate, dummy) and that backend's variables.

    `task_modules`: the default of TASK_MODULES, modules whose tasks the workers register besides
    the installed apps' tasks modules.
    """
    choice = env_choice("QUEUE_BACKEND", {"rq", "sqs", "immediate", "dummy"}, default_backend)
    shared = {
        "MAX_ATTEMPTS": env_int("TASKS_MAX_ATTEMPTS", 3, minimum=1, maximum=100),
        "RETRY_DELAY": env_int("TASKS_RETRY_DELAY", 10, maximum=900),
        "TASK_MODULES": env_list("TASK_MODULES", list(task_modules)),
    }
    if choice == "rq":
        options = {
            **shared,
            "URL": rq_url,
            "JOB_TIMEOUT": env_int("RQ_JOB_TIMEOUT", 600, minimum=1),
        }
        return {"default": {"BACKEND": RQ_BACKEND, "OPTIONS": options}}
    if choice == "sqs":
        queue_url, queue_name = env_str("SQS_QUEUE_URL", ""), env_str("SQS_QUEUE_NAME", "")
        if not (queue_url or queue_name):
            raise ImproperlyConfigured(
                "QUEUE_BACKEND=sqs needs the environment variable SQS_QUEUE_URL or SQS_QUEUE_NAME."
            )
        options = {
            **shared,
            "QUEUE_URL": queue_url or None,
            "QUEUE_NAME": queue_name or None,
            "WAIT_TIME_SECONDS": env_int("SQS_WAIT_TIME_SECONDS", 20, maximum=20),
            "MAX_MESSAGES": env_int("SQS_MAX_MESSAGES", 10, minimum=1, maximum=10),
            # Unset: the queue's own VisibilityTimeout attribute, read when the worker starts.
            "VISIBILITY_TIMEOUT": env_int("SQS_VISIBILITY_TIMEOUT", None, minimum=1, maximum=43200),
            "JOB_TIMEOUT": env_int("SQS_JOB_TIMEOUT", 600, minimum=1, maximum=43200),
        }
        return {"default": {"BACKEND": "queues.sqs.backend.SQSBackend", "OPTIONS": options}}
    backend = f"django.tasks.backends.{choice}.{choice.title()}Backend"
    return {"default": {"BACKEND": backend}}


def rq_queues(tasks):
    """django-rq's RQ_QUEUES for the RQ backends of `tasks`: one connection definition for both.

    Each RQ queue of those backends, on the backend's URL, read with our JSON serializer (the
    dashboard would fail to read our jobs with RQ's default, pickle). Empty without an RQ backend:
    the dashboard then shows no queue rather than poking at the impression buffer's Redis.
    """
    return {
        name: {
            "URL": params["OPTIONS"]["URL"],
            "SERIALIZER": "rq.serializers.JSONSerializer",
            "DEFAULT_TIMEOUT": params["OPTIONS"].get("JOB_TIMEOUT", 600),
        }
        for params in tasks.values()
        if params["BACKEND"] == RQ_BACKEND
        for name in params.get("QUEUES", ["default"])
    }


# The RQ queue's Redis: standalone only (RQ refuses cluster mode, see queues.rq.cluster).
RQ_REDIS_URL = env_redis_url("RQ_REDIS_URL", REDIS_URL)
# Production picks rq or sqs; without QUEUE_BACKEND tasks run in-process.
TASKS = task_settings("immediate", RQ_REDIS_URL)
# django-rq: its queues come from TASKS (each settings module that sets TASKS derives them again);
# anything it builds resolves job functions through our job class, which runs only our trampoline.
RQ_QUEUES = rq_queues(TASKS)
RQ = {"JOB_CLASS": "queues.rq.worker.TaskJob"}
# casusult.urls mounts the dashboard at /admin/rq/, linked from the queue status admin page.
RQ_SHOW_ADMIN_LINK = False

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
