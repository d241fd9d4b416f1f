"""Test runs: PostgreSQL (the production database engine) unless DATABASE_URL says otherwise."""

from .base import *  # noqa: F403
from .env import env_database, env_str

DEBUG = False
SECRET_KEY = env_str("SECRET_KEY", "test-only-secret-key")
DATABASES = {"default": env_database("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")}
DATABASES["default"]["CONN_MAX_AGE"] = 0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
