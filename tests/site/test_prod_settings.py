"""settings.prod: clean under check --deploy with a production-like environment, loud without it."""

import json
import secrets

import pytest

PROD_ENV = {
    "DJANGO_SETTINGS_MODULE": "settings.prod",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "DATABASE_URL": "postgres://app@db.internal:5432/casusult",
    "ALLOWED_HOSTS": "casusult.example.com",
    "QUEUE_BACKEND": "sqs",
    "SQS_QUEUE_NAME": "casusult",
    "REDIS_URL": "rediss://buffer.serverless.use1.cache.amazonaws.com:6379/0",
    "IMPRESSIONS_TRUSTED_PROXIES": "1",  # the ALB (impressions.W004 otherwise)
    # Whatever the developer's shell has must not leak into the production check.
    "DEBUG": None,
    "LOG_FORMAT": None,
    "SECURE_SSL_REDIRECT": None,
    "SECURE_HSTS_SECONDS": None,
}


def test_check_deploy_passes_with_production_environment(manage, production_queue):
    env = {**PROD_ENV, **production_queue}
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_the_settings_flag_as_the_docs_write_it(manage, production_queue):
    # --settings must win over DJANGO_SETTINGS_MODULE, also for the one-line error.
    flag_env = {**PROD_ENV, **production_queue, "DJANGO_SETTINGS_MODULE": "settings.test"}
    args = ("check", "--deploy", "--fail-level", "WARNING", "--settings=settings.prod")
    passed = manage(*args, env=flag_env)
    assert passed.returncode == 0, passed.stderr
    failed = manage(*args, env={**flag_env, "SECRET_KEY": None})
    assert failed.returncode != 0
    assert failed.stderr.strip() == "error: The environment variable SECRET_KEY is required."


@pytest.mark.parametrize(
    "variable", ["SECRET_KEY", "DATABASE_URL", "ALLOWED_HOSTS", "QUEUE_BACKEND"]
)
def test_missing_variable_fails_naming_it(manage, variable):
    result = manage("check", "--deploy", env={**PROD_ENV, variable: None})
    assert result.returncode != 0
    assert variable in result.stderr
    # One clear line, not a traceback through importlib.
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("hosts", ["", ",", " , "])
def test_allowed_hosts_naming_no_host_is_refused(manage, hosts):
    result = manage("check", env={**PROD_ENV, "ALLOWED_HOSTS": hosts})
    assert result.returncode != 0
    assert "ALLOWED_HOSTS names no host" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "secret", ["short", "x" * 64, "django-insecure-" + secrets.token_urlsafe(50)]
)
def test_guessable_secret_key_is_refused(manage, secret):
    result = manage("check", "--deploy", env={**PROD_ENV, "SECRET_KEY": secret})
    assert result.returncode != 0
    assert "SECRET_KEY must be a long random value" in result.stderr


def test_sqs_without_queue_is_refused(manage):
    result = manage("check", env={**PROD_ENV, "SQS_QUEUE_NAME": None, "SQS_QUEUE_URL": None})
    assert result.returncode != 0
    assert "SQS_QUEUE_URL or SQS_QUEUE_NAME" in result.stderr


@pytest.mark.parametrize(
    ("overrides", "check_id"),
    [
        ({"DEBUG": "true"}, "security.W018"),
        ({"SECURE_SSL_REDIRECT": "false"}, "security.W008"),
        ({"SECURE_HSTS_SECONDS": "0"}, "security.W004"),
    ],
)
def test_weakened_settings_fail_the_deploy_check(manage, overrides, check_id):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env={**PROD_ENV, **overrides})
    assert result.returncode != 0
    assert check_id in result.stderr


def test_bad_log_format_is_named(manage):
    result = manage("check", env={**PROD_ENV, "LOG_FORMAT": "xml"})
    assert result.returncode != 0
    assert "LOG_FORMAT" in result.stderr


def test_prod_logs_one_json_object_per_line(manage):
    script = (
        "import logging; "
        "logging.getLogger('casusult.probe').warning('hello %s', 'world', extra={'post_id': 7})"
    )
    result = manage("shell", "-c", script, env=PROD_ENV)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "casusult.probe" in line]
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["message"] == "hello world"
    assert entry["level"] == "WARNING"
    assert entry["post_id"] == 7


def test_production_sends_the_same_headers(manage):
    script = (
        "import json; from django.conf import settings; print(json.dumps({"
        "'csp': settings.SECURE_CSP, 'pp': settings.PERMISSIONS_POLICY,"
        " 'middleware': settings.MIDDLEWARE}))"
    )
    result = manage("shell", "-c", script, env=PROD_ENV)
    assert result.returncode == 0, result.stderr
    prod = json.loads(result.stdout.strip().splitlines()[-1])
    assert "django.middleware.csp.ContentSecurityPolicyMiddleware" in prod["middleware"]
    assert "casusult.security.PermissionsPolicyMiddleware" in prod["middleware"]
    assert prod["csp"]["script-src"] == ["'self'", "<CSP_NONCE_SENTINEL>"]
    assert prod["pp"]["camera"] == []
