"""Bad environment variables fail start-up with a message that names them."""

import pytest


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REDIS_URL", "localhost:6379"),
        ("DEBUG", "maybe"),
        ("DATABASE_URL", "nosuchdb://x/y"),
    ],
)
def test_malformed_variable_fails_check_naming_it(manage, variable, value):
    result = manage("check", env={variable: value})
    assert result.returncode != 0
    assert variable in result.stderr


def test_prod_requires_secret_key_and_database_url(manage):
    result = manage(
        "check",
        env={"DJANGO_SETTINGS_MODULE": "settings.prod", "SECRET_KEY": None, "DATABASE_URL": None},
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_prod_names_missing_database_url(manage):
    result = manage(
        "check",
        env={
            "DJANGO_SETTINGS_MODULE": "settings.prod",
            "SECRET_KEY": "prod-like-" + "abcdefghij" * 5,  # passes the length/variety rule
            "DATABASE_URL": None,
        },
    )
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr


def test_good_environment_passes_check(manage):
    result = manage("check")
    assert result.returncode == 0, result.stderr
