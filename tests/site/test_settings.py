"""Bad environment variables fail start-up with a message that names them."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from settings.env import env_database, env_redis_url
from tests.settings_modules import load_settings


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REDIS_URL", "localhost:6379"),
        ("DEBUG", "maybe"),
        ("DATABASE_URL", "nosuchdb://x/y"),
    ],
)
def test_malformed_variable_is_refused_naming_it(variable, value):
    # manage.py prints the refusal as one line and exits non-zero (tests/site/test_prod_settings.py
    # and tests/impressions/test_settings.py run it).
    with pytest.raises(ImproperlyConfigured, match=variable):
        load_settings("settings.test", {variable: value})


def test_prod_requires_secret_key_and_database_url():
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY"):
        load_settings("settings.prod", {"SECRET_KEY": None, "DATABASE_URL": None})


def test_prod_names_missing_database_url():
    env = {
        "SECRET_KEY": "prod-like-" + "abcdefghij" * 5,  # passes the length/variety rule
        "DATABASE_URL": None,
    }
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        load_settings("settings.prod", env)


def test_good_environment_passes_check():
    call_command("check")  # SystemCheckError on any error


SECRET = "hunter2-s3cret"


@pytest.mark.parametrize(
    ("value", "said"),
    [
        # Without a scheme the text is not shown at all: it may be the password itself.
        (SECRET, "does not start with a scheme:// (its 14 characters are not shown"),
        (f"{SECRET}@cache:6379", "does not start with a scheme://"),
        (f"http://:{SECRET}@cache:6379/0", "has an unknown scheme (scheme 'http', host 'cache')"),
        (f"redis://:{SECRET}@:6379/0", "has an empty host (scheme 'redis')"),
        # An @ in a query value (a CA file's path) is no host: redacted, the URL read "main.pem".
        (f"rediss://:{SECRET}@/0?ssl_ca_certs=/etc/ca@main.pem", "has an empty host"),
        ("rediss:///0?ssl_ca_certs=/etc/ca@main.pem", "has an empty host (scheme 'rediss')"),
        (f"redis://u:{SECRET}/x@cache:port/0", "has a port that is not a number from 0 to 65535"),
        (f"redis://:{SECRET}@[::1:6379/0", "has a host with an unclosed [ (scheme 'redis')"),
        # redis-py would say "Port could not be cast to integer value as 'hunter2'".
        (f"redis://:{SECRET.replace('-', '/')}@cache:6379/0", "has a user name or password"),
        (f"redis://u:{SECRET.replace('-', '#')}@cache:6379/0", "has a user name or password"),
        (f"rediss://:{SECRET.replace('-', '?')}@cache:6379/0", "has a user name or password"),
        # An @ before the / ? #: redis-py would send "hunter2" to the host "hunter2@s3" names.
        ("redis://:hunter2@s3/cret@cache:6379/0", "has a user name or password"),
        ("redis://:hunter2@s3?cret@cache:6379/0", "has a user name or password"),
        ("redis://:hunter2@s3#cret@cache:6379/0", "has a user name or password"),
        # A raw ? or # in the user name: redis-py connected to the host "s3".
        ("redis://s3?cret:hunter2@cache:6379/0", "has a user name or password"),
        ("redis://s3#cret:hunter2@cache:6379/0", "has a user name or password"),
        ("unix://", "names no socket path"),
        ("unix://:hunter2/s3cret@/run/redis.sock", "has a user name or password"),
        # redis-py would quietly use database 0 (the buffer's, say) for the first.
        (f"redis://:{SECRET}@cache:6379/abc", "has a path that is no database number /0, /1, …"),
        (f"redis://:{SECRET}@cache:6379/-1", "has a path that is no database number"),
    ],
)
def test_a_malformed_redis_url_says_what_is_wrong_and_hides_the_rest(monkeypatch, value, said):
    monkeypatch.setenv("REDIS_URL", value)
    with pytest.raises(ImproperlyConfigured) as raised:
        env_redis_url("REDIS_URL")
    message = str(raised.value)
    assert message.startswith(f"The environment variable REDIS_URL {said}"), message
    assert "redis://HOST:PORT/DB" in message
    assert SECRET not in message and "s3cret" not in message and "hunter2" not in message


@pytest.mark.parametrize(
    "value",
    [
        "redis://cache:6379/0",
        "rediss://u:p@cache.example.com:6380/1",
        "unix:///r.sock",
        "unix:///run/redis@main.sock",  # an @ in a socket's path: no credentials
        "unix://:p%2Fw@/run/redis@main.sock?db=2",
        "redis://:p%2Fw%23d@cache:6379/0",  # percent-encoded
        "redis://:p@ss@cache:6379/0",  # an @ is read up to the last one, by redis-py too
        "rediss://cache:6380/0?ssl_ca_certs=/etc/ca@2026/ca.pem",  # an @ in the query
        "rediss://u:p@cache:6380/0?ssl_ca_certs=/etc/ca@2026/ca.pem",  # and credentials
        "redis://cache:6379",  # database 0
        "redis://cache:6379/7/",
    ],
)
def test_a_redis_url_of_each_scheme_is_taken(monkeypatch, value):
    monkeypatch.setenv("REDIS_URL", value)
    assert env_redis_url("REDIS_URL") == value


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (SECRET, "does not start with a scheme:// (its 14 characters are not shown"),
        (f"{SECRET}@db:5432/app", "does not start with a scheme://"),
        ("", "is empty"),
        (f"nosuchdb://app:{SECRET}@db/app", "has an unknown scheme (scheme 'nosuchdb', host 'db')"),
        (f"postgres://app:{SECRET}@db:5432/", "names no database (scheme 'postgres', host 'db'"),
        (f"postgres://app:{SECRET}/x@db:port/app", "has a port that is not a number from 0 to"),
        (f"postgres://app:{SECRET}@[::1/app", "has a host with an unclosed [ (scheme 'postgres')"),
        (f"postgres://app:{SECRET.replace('-', '/')}@db/app", "has a user name or password"),
        ("postgres://app:hunter2@s3/cret@db:5432/app", "has a user name or password"),
        ("postgres://app:hunter2@s3?cret@db:5432/app", "has a user name or password"),
        # A raw / in the user name: Django connected to the host "s3" and sent it the database
        # name "cret:hunter2@db/app", the password's text.
        ("postgres://s3/cret:hunter2@db:5432/app", "has a user name or password"),
        ("postgres://s3?cret:hunter2@db:5432/app", "has a user name or password"),
    ],
)
def test_a_malformed_database_url_says_what_is_wrong_and_hides_the_rest(monkeypatch, value, said):
    monkeypatch.setenv("DATABASE_URL", value)
    with pytest.raises(ImproperlyConfigured) as raised:
        env_database()
    message = str(raised.value)
    assert message.startswith(f"The environment variable DATABASE_URL {said}"), message
    assert "postgres://USER:PASSWORD@HOST:PORT/NAME" in message
    assert SECRET not in message and "s3cret" not in message


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("postgres://app:pw@db:5432/app", "app"),
        ("postgres:///app", "app"),  # the local socket
        ("postgres://app:pw@%2Frun%2Fpg/app", "app"),  # a socket directory as the host
        # A socket directory holding an @ in the query, with credentials: no misread.
        ("postgres://app:pw@/app?host=/run/pg@main", "app"),
        # An @ in a query value (a CA file's path), with or without credentials.
        ("postgres://db/app?sslrootcert=/etc/pki/ca@main.pem", "app"),
        ("postgres://app:pw@db:5432/app?sslrootcert=/etc/pki/ca@2026.pem", "app"),
        ("sqlite://", ":memory:"),
        ("sqlite://:memory:", ":memory:"),
        ("sqlite:///db.sqlite3", "db.sqlite3"),
    ],
)
def test_a_database_url_of_each_form_is_taken(monkeypatch, value, name):
    monkeypatch.setenv("DATABASE_URL", value)
    assert env_database()["NAME"] == name


def test_an_rq_option_variable_out_of_range_is_named(monkeypatch, settings):
    # The same check as for the SQS variables (tests/queues/sqs/test_processes.py), in-process.
    from django.core import checks

    from tests.queues.rq.support import rq_settings

    for name, value in rq_settings(settings.RQ_REDIS_URL, JOB_TIMEOUT=0).items():
        setattr(settings, name, value)
    monkeypatch.setenv("RQ_JOB_TIMEOUT", " 0")
    errors = [error for error in checks.run_checks() if error.id == "casusult.E002"]
    assert [error.msg for error in errors] == [
        "The environment variable RQ_JOB_TIMEOUT='0' sets TASKS['default']['OPTIONS']"
        "['JOB_TIMEOUT'], which must be a whole number of seconds >= 1."
    ]
    monkeypatch.delenv("RQ_JOB_TIMEOUT")  # set in the settings file, not by the variable
    assert not [error for error in checks.run_checks() if error.id == "casusult.E002"]
