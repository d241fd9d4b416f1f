"""Impressions settings from the site's environment: a bad variable fails every command, naming it.

A value that does not parse fails in settings/env.py; one that parses but is out of range fails
the impressions app's system check (impressions.E005), which names the setting of the same name.
"""

import pytest


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("IMPRESSIONS_DEDUP_WINDOW", "five minutes"),
        ("IMPRESSIONS_FLUSH_DELAY", "-1"),
        ("IMPRESSIONS_REDIS_CLUSTER", "maybe"),
        # Values Redis or datetime would only reject at run time, per request or per flush.
        ("IMPRESSIONS_DEDUP_WINDOW", "99999999999999999999"),
        ("IMPRESSIONS_FLUSH_DELAY", "١٦"),  # digits of another script
        ("IMPRESSIONS_ENABLED", "sometimes"),
        ("IMPRESSIONS_TRUSTED_PROXIES", "one"),
        ("IMPRESSIONS_TRUSTED_PROXIES", "33"),
        ("IMPRESSIONS_HISTORY_DAYS", "-1"),
        ("IMPRESSIONS_HISTORY_DAYS", "a year"),
        ("IMPRESSIONS_HISTORY_DAYS", "36501"),
    ],
)
def test_a_malformed_variable_fails_check_naming_it(manage, variable, value):
    result = manage("check", env={variable: value})
    assert result.returncode != 0
    assert variable in result.stderr


def test_bad_variables_are_all_reported_in_one_run(manage):
    env = {"IMPRESSIONS_FLUSH_DELAY": "-1", "IMPRESSIONS_HISTORY_DAYS": "-1"}
    result = manage("check", env={**env, "IMPRESSIONS_TRUSTED_PROXIES": "99"})
    assert result.returncode != 0
    assert result.stderr.count("impressions.E005") == 3


def test_a_variable_the_site_does_not_map_changes_nothing(manage):
    # Set in a settings module, IMPRESSIONS_SHARDS=0 is an error; the site does not map it.
    code = "from impressions.conf import SETTINGS, conf; print(conf.SHARDS, SETTINGS['IMPRESSIONS_SHARDS'].default)"
    result = manage("shell", "--no-imports", "-c", code, env={"IMPRESSIONS_SHARDS": "0"})
    assert result.returncode == 0, result.stderr
    shards, default = result.stdout.split()
    assert shards == default


def test_the_defaults_pass_check(manage):
    result = manage("check")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("value", "days"), [(None, 400), ("0", 0), ("30", 30)])
def test_history_days_comes_from_the_environment(manage, value, days):
    code = "from impressions.conf import conf; print(conf.HISTORY_DAYS)"
    result = manage("shell", "--no-imports", "-c", code, env={"IMPRESSIONS_HISTORY_DAYS": value})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(days)
