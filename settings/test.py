"""Test runs: PostgreSQL (the production database engine) unless DATABASE_URL says otherwise."""

from .base import *  # noqa: F403
from .base import INSTALLED_APPS, rq_queues, task_settings
from .env import env_database, env_redis_url, env_str

DEBUG = False
# A model of a test-only app for the impressions app to count (tests/impressions/test_reuse.py);
# an app whose tasks module the queue workers discover (tests/queues/taskapp).
INSTALLED_APPS = [*INSTALLED_APPS, "tests.impressions.countedapp", "tests.queues.taskapp"]
SECRET_KEY = env_str("SECRET_KEY", "test-only-secret-key")
DATABASES = {"default": env_database("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")}
DATABASES["default"]["CONN_MAX_AGE"] = 0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Never the developer's db 0: tests flush their Redis database.
IMPRESSIONS_REDIS_URL = env_redis_url("REDIS_URL", "redis://127.0.0.1:6379/15")

# The record call's time budget: the app's 50 ms in production, 2 s here, where two test
# processes, their workers, servers and a browser share two cores and a reply may take longer
# than 50 ms (a test's counts would then come up short). The tests of the budget itself, and of
# what a slow Redis costs, set the app's (tests/impressions/support.py APP_REDIS_TIMEOUT).
# IMPRESSIONS_REDIS_TIMEOUT in the environment (settings.base) still wins.
globals().setdefault("IMPRESSIONS_REDIS_TIMEOUT", 2.0)

# Tests look at what was enqueued; tests of the real backends configure them explicitly (or set
# QUEUE_BACKEND). RQ gets its own db, never the developer's db 0. Not derived from REDIS_URL: test
# processes point REDIS_URL at a Redis Cluster, where RQ is refused; set both to keep two test
# runs on two Redis servers apart.
RQ_REDIS_URL = env_redis_url("RQ_REDIS_URL", "redis://127.0.0.1:6379/14")
# The queue tests' own tasks live in tests.queues.tasks, no installed app's tasks module: listed.
TEST_TASK_MODULES = ["tests.queues.tasks"]
TASKS = task_settings("dummy", task_modules=TEST_TASK_MODULES)
RQ_QUEUES = rq_queues(TASKS, RQ_REDIS_URL)
