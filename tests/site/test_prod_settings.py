"""settings.prod: clean under check --deploy with a production-like environment, loud without it.

What settings.prod makes of an environment is loaded here, afresh (tests/settings_modules.py);
real `manage.py` runs show the command's side: the deploy check passing, a refusal as one line,
the --settings flag, the JSON log lines."""

import json
import secrets

import pytest
from django.core.checks import WARNING, Tags, run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from tests.settings_modules import load_settings, setting_values

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


def prod_settings(**env):
    """settings.prod loaded afresh with PROD_ENV and `env` on top (None: unset)."""
    return load_settings("settings.prod", {**PROD_ENV, **env})


def refusal(**env):
    """The message settings.prod refuses `env` with: manage.py prints it as one line (error: …),
    as test_a_missing_variable_stops_the_command_in_one_line shows."""
    with pytest.raises(ImproperlyConfigured) as refused:
        prod_settings(**env)
    return str(refused.value)


def test_a_missing_variable_stops_the_command_in_one_line(manage):
    result = manage("check", "--deploy", env={**PROD_ENV, "SECRET_KEY": None})
    assert result.returncode != 0
    assert result.stderr.strip() == "error: The environment variable SECRET_KEY is required."


@pytest.mark.parametrize(
    "variable", ["SECRET_KEY", "DATABASE_URL", "ALLOWED_HOSTS", "QUEUE_BACKEND"]
)
def test_missing_variable_is_refused_naming_it(variable):
    assert variable in refusal(**{variable: None})


@pytest.mark.parametrize("hosts", ["", ",", " , "])
def test_allowed_hosts_naming_no_host_is_refused(hosts):
    assert "ALLOWED_HOSTS names no host" in refusal(ALLOWED_HOSTS=hosts)


# Django compares the Host header's name, lower-cased, without its port or trailing dot, with each
# entry: one of these forms matches no request, and a site given only such entries answers 400 to
# every page while its probes (any host) stay healthy.
@pytest.mark.parametrize(
    ("hosts", "entry"),
    [
        ("2001:db8::1", "2001:db8::1"),
        ("casusult.example.com,::1", "::1"),
        ("casusult.example.com:8443", "casusult.example.com:8443"),
        ("https://casusult.example.com", "https://casusult.example.com"),
        ("*.example.com", "*.example.com"),
        ("casusult.example.com.", "casusult.example.com."),
        ("[::1]:8000", "[::1]:8000"),
    ],
)
def test_allowed_hosts_entry_no_request_can_match_is_refused(hosts, entry):
    message = refusal(ALLOWED_HOSTS=hosts)
    assert f"ALLOWED_HOSTS lists {entry!r}" in message


def test_allowed_hosts_in_every_form_django_matches():
    hosts = "casusult.example.com,Casusult.Example.COM,.example.org,[::1],[2001:DB8::1],10.0.0.5,*"
    assert hosts.split(",") == prod_settings(ALLOWED_HOSTS=hosts).ALLOWED_HOSTS


@pytest.mark.parametrize(
    "secret",
    [
        "short",
        "x" * 64,
        # Named: each test process draws its own, and pytest-xdist's workers must collect the same.
        pytest.param("django-insecure-" + secrets.token_urlsafe(50), id="django-insecure-random"),
    ],
)
def test_guessable_secret_key_is_refused(secret):
    assert "SECRET_KEY must be a long random value" in refusal(SECRET_KEY=secret)


@pytest.mark.parametrize("root", ["", " ", "staticfiles", "./static"])
def test_static_root_not_an_absolute_directory_is_refused(root):
    """An empty STATIC_ROOT started a site whose every page failed on its missing manifest; a
    relative one is another directory for collectstatic and the server, each in its own cwd."""
    assert "STATIC_ROOT must be an absolute directory path" in refusal(STATIC_ROOT=root)


def test_static_root_from_the_environment():
    assert prod_settings(STATIC_ROOT="/srv/casusult/static").STATIC_ROOT == "/srv/casusult/static"


def test_sqs_without_queue_is_refused():
    assert "SQS_QUEUE_URL or SQS_QUEUE_NAME" in refusal(SQS_QUEUE_NAME=None, SQS_QUEUE_URL=None)


# What the deploy checks of the security tag read (the rest of settings.prod is checked by
# test_check_deploy_passes_with_production_environment, in a real process).
SECURITY_SETTINGS = ("DEBUG", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECRET_KEY")


def security_check_ids(**env):
    loaded = setting_values(prod_settings(**env))
    with override_settings(**{name: loaded[name] for name in SECURITY_SETTINGS}):
        found = run_checks(tags=[Tags.security], include_deployment_checks=True)
    return {error.id for error in found if error.level >= WARNING}


@pytest.mark.parametrize(
    ("overrides", "check_id"),
    [
        ({"DEBUG": "true"}, "security.W018"),
        ({"SECURE_SSL_REDIRECT": "false"}, "security.W008"),
        ({"SECURE_HSTS_SECONDS": "0"}, "security.W004"),
    ],
)
def test_weakened_settings_fail_the_deploy_check(overrides, check_id):
    assert check_id not in security_check_ids()
    assert check_id in security_check_ids(**overrides)


def test_bad_log_format_is_named():
    assert "LOG_FORMAT" in refusal(LOG_FORMAT="xml")
    # Was a traceback from logging's dictConfig ("Unable to configure logger 'django'").
    assert "LOG_LEVEL='verbose' is not one of: critical, debug, error, info, warning" in refusal(
        LOG_LEVEL="verbose"
    )


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


def test_production_sends_the_same_headers():
    prod = prod_settings()
    assert "django.middleware.csp.ContentSecurityPolicyMiddleware" in prod.MIDDLEWARE
    assert "casusult.security.PermissionsPolicyMiddleware" in prod.MIDDLEWARE
    assert prod.SECURE_CSP["script-src"] == ["'self'", "<CSP_NONCE_SENTINEL>"]
    assert prod.PERMISSIONS_POLICY["camera"] == []
