"""Impressions settings: a malformed value fails every command, naming the variable."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from impressions import conf


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("IMPRESSIONS_DEDUP_WINDOW", "five minutes"),
        ("IMPRESSIONS_FLUSH_DELAY", "-1"),
        ("IMPRESSIONS_FLUSH_BATCH_SIZE", "0"),
        ("IMPRESSIONS_REDIS_TIMEOUT", "fast"),
        ("IMPRESSIONS_REDIS_CLUSTER", "maybe"),
        ("IMPRESSIONS_COUNT_ANONYMOUS", "perhaps"),
        ("IMPRESSIONS_SHARDS", "0"),
        ("IMPRESSIONS_KEY_PREFIX", "{imp}"),
        # Values Redis or datetime would only reject at run time, per request or per flush.
        ("IMPRESSIONS_DEDUP_WINDOW", "99999999999999999999"),
        ("IMPRESSIONS_REDIS_TIMEOUT", "inf"),
        ("IMPRESSIONS_LEDGER_RETENTION_DAYS", "9999999999"),
        ("IMPRESSIONS_SHARDS", "١٦"),  # digits of another script
        ("IMPRESSIONS_ENABLED", "sometimes"),
        ("IMPRESSIONS_TRUSTED_PROXIES", "one"),
        ("IMPRESSIONS_IGNORE_USER_AGENTS", "bot(("),
        ("IMPRESSIONS_VISITOR_COOKIE_AGE", "0"),
    ],
)
def test_a_malformed_variable_fails_check_naming_it(manage, variable, value):
    result = manage("check", env={variable: value})
    assert result.returncode != 0
    assert variable in result.stderr


def test_the_defaults_pass_check(manage):
    result = manage("check")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IMPRESSIONS_DEDUP_WINDOW", "300"),
        ("IMPRESSIONS_FLUSH_BATCH_SIZE", 0),
        ("IMPRESSIONS_REDIS_TIMEOUT", 0),
        ("IMPRESSIONS_COUNT_ANONYMOUS", "yes"),
        ("IMPRESSIONS_SHARDS", 2000),
        ("IMPRESSIONS_DEDUP_WINDOW", 10**20),
        ("IMPRESSIONS_FLUSH_REDIS_TIMEOUT", float("inf")),
        ("IMPRESSIONS_LEDGER_RETENTION_DAYS", 10**10),
    ],
)
def test_values_set_in_a_settings_module_are_validated_too(name, value):
    with override_settings(**{name: value}), pytest.raises(ImproperlyConfigured, match=name):
        conf.validate()


def test_lazy_settings_follow_override_settings():
    with override_settings(IMPRESSIONS_FLUSH_DELAY=7):
        assert conf.conf.FLUSH_DELAY == 7
        assert conf.conf.GUARD_TTL == 7 + conf.GUARD_GRACE_SECONDS
    assert conf.conf.FLUSH_DELAY == 300


def test_deploy_check_warns_when_the_flush_cannot_be_deferred():
    from django.core.checks import run_checks

    immediate = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
    dummy = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}
    with override_settings(TASKS=immediate):
        ids = {message.id for message in run_checks(include_deployment_checks=True)}
    assert "impressions.W001" in ids
    with override_settings(TASKS=dummy):
        ids = {message.id for message in run_checks(include_deployment_checks=True)}
    assert "impressions.W001" not in ids
    assert "impressions.W002" in ids  # stored, never run: nothing would flush
    from impressions.checks import check_flush_can_be_deferred

    rq = {
        "default": {
            "BACKEND": "queues.backends.rq.RQBackend",
            "OPTIONS": {"URL": "redis://127.0.0.1:6379/14"},
        }
    }
    with override_settings(TASKS=rq):
        assert check_flush_can_be_deferred() == []
