"""Local development: DEBUG on, SQLite file unless DATABASE_URL says otherwise."""

from .base import *  # noqa: F403
from .base import BASE_DIR, MIDDLEWARE, RQ_REDIS_URL, rq_queues, task_settings
from .env import env_bool, env_database, env_str

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str("SECRET_KEY", "dev-only-insecure-secret-key-do-not-use-in-production")
DATABASES = {"default": env_database("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}

# `make run` starts `runworker` next to the web server: RQ on the local Redis by default.
TASKS = task_settings("rq")
RQ_QUEUES = rq_queues(TASKS, RQ_REDIS_URL)

# Django's debug 404 and 500 pages have inline styles without the CSP nonce: sent without it.
_after_csp = MIDDLEWARE.index("django.middleware.csp.ContentSecurityPolicyMiddleware") + 1
MIDDLEWARE = [
    *MIDDLEWARE[:_after_csp],
    "casusult.security.DebugPagesWithoutPolicyMiddleware",
    *MIDDLEWARE[_after_csp:],
]
