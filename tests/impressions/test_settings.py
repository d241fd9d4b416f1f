"""Impressions settings: a malformed variable fails every command (a real manage.py), naming it."""

import pytest


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
        ("IMPRESSIONS_HISTORY_DAYS", "-1"),
        ("IMPRESSIONS_HISTORY_DAYS", "a year"),
        ("IMPRESSIONS_HISTORY_DAYS", "36501"),
    ],
)
def test_a_malformed_variable_fails_check_naming_it(manage, variable, value):
    result = manage("check", env={variable: value})
    assert result.returncode != 0
    assert variable in result.stderr


def test_the_defaults_pass_check(manage):
    result = manage("check")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("value", "days"), [(None, 400), ("0", 0), ("30", 30)])
def test_history_days_comes_from_the_environment(manage, value, days):
    code = "from impressions.conf import conf; print(conf.HISTORY_DAYS)"
    result = manage("shell", "--no-imports", "-c", code, env={"IMPRESSIONS_HISTORY_DAYS": value})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(days)
