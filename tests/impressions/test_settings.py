"""Impressions settings from the site's environment: a bad variable fails every command, naming it.

A value that does not parse fails in settings/env.py; one that parses but is out of range fails
the impressions app's system check (impressions.E005), which names the setting of the same name.

Each value is loaded here, into fresh settings modules (tests/settings_modules.py), and the loaded
IMPRESSIONS_* settings go through this process's system checks: what `manage.py` would configure
and check with that environment. Two real `manage.py check` runs show that either refusal stops
the command, naming the variable.
"""

import os
import sys

import pytest
from django.core.checks import ERROR, run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import override_settings

from impressions.conf import SETTINGS, conf
from tests.settings_modules import load_settings, setting_values


def impressions_settings(**env):
    """The IMPRESSIONS_* settings settings.test gives with `env` set (None: unset)."""
    return setting_values(load_settings("settings.test", env), prefix="IMPRESSIONS_")


def refusals(variable, value):
    """What stops a command with `variable`=`value`: the settings' refusal, or the errors of the
    system checks (every check a command runs) on the settings loaded."""
    try:
        loaded = impressions_settings(**{variable: value})
    except ImproperlyConfigured as refused:
        return [str(refused)]
    with override_settings(**loaded):
        return [str(error) for error in run_checks() if error.level >= ERROR]


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
def test_a_malformed_variable_is_refused_naming_it(variable, value):
    found = refusals(variable, value)
    assert found and all(variable in refusal for refusal in found), found


def test_a_variable_that_does_not_parse_fails_check_naming_it(manage):
    result = manage("check", env={"IMPRESSIONS_DEDUP_WINDOW": "five minutes"})
    assert result.returncode != 0
    assert "IMPRESSIONS_DEDUP_WINDOW" in result.stderr


def test_bad_variables_are_all_reported_in_one_check_run(manage):
    env = {"IMPRESSIONS_FLUSH_DELAY": "-1", "IMPRESSIONS_HISTORY_DAYS": "-1"}
    result = manage("check", env={**env, "IMPRESSIONS_TRUSTED_PROXIES": "99"})
    assert result.returncode != 0
    assert result.stderr.count("impressions.E005") == 3
    for variable in (*env, "IMPRESSIONS_TRUSTED_PROXIES"):
        assert f"{variable}: (impressions.E005)" in result.stderr


def test_a_variable_the_site_does_not_map_changes_nothing(monkeypatch):
    # Set in a settings module, IMPRESSIONS_SHARDS=0 is an error; the site does not map it.
    loaded = impressions_settings(IMPRESSIONS_SHARDS="0")
    assert loaded == impressions_settings(IMPRESSIONS_SHARDS=None)
    monkeypatch.setenv("IMPRESSIONS_SHARDS", "0")  # nor does the app read it
    with override_settings(**loaded):
        shards = conf.SHARDS
    assert shards == SETTINGS["IMPRESSIONS_SHARDS"].default


def test_the_defaults_pass_check():
    with override_settings(**impressions_settings()):
        call_command("check")  # SystemCheckError on any error


@pytest.mark.parametrize(("value", "days"), [(None, 400), ("0", 0), ("30", 30)])
def test_history_days_comes_from_the_environment(value, days):
    with override_settings(**impressions_settings(IMPRESSIONS_HISTORY_DAYS=value)):
        loaded = conf.HISTORY_DAYS
    assert loaded == days


def test_loading_leaves_this_process_alone():
    settings_module, environment = sys.modules["settings.test"], dict(os.environ)
    with pytest.raises(ImproperlyConfigured):
        impressions_settings(IMPRESSIONS_DEDUP_WINDOW="five minutes")
    assert dict(os.environ) == environment
    assert sys.modules["settings.test"] is settings_module
