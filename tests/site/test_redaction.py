"""Credentials in URLs never reach a reader: settings errors, system checks, log lines, the admin's
queue status page and "Flush now" (the django-rq pages and /readyz:
tests/queues/rq/test_dashboard_permissions.py, tests/site/test_health.py). One function does it:
redis_endpoints.redact."""

import json
import logging
import re
import sys
import time
import traceback
from pathlib import Path

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from hypothesis import given
from hypothesis import strategies as st

from casusult.jsonlog import JsonFormatter, PlainFormatter
from redis_endpoints import RedactingFilter, redact, redact_text, redacting_logger
from tests.queues.rq.support import rq_settings
from tests.settings_modules import load_settings

SECRET = "s3cret-Pa55"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://:{SECRET}@cache:6379/0", "redis://:***@cache:6379/0"),
        (f"rediss://default:{SECRET}@cache/0", "rediss://default:***@cache/0"),
        ("redis://user:p%40ss%2Fw@cache/0", "redis://user:***@cache/0"),  # percent-encoded
        (f"redis://u:{SECRET}@x/y@cache/0", "redis://u:***@cache/0"),  # raw '@' and '/'
        (f"redis://{SECRET}@cache/0", "redis://***@cache/0"),  # a lone user name may be a token
        (f"redis://cache/0?password={SECRET}&db=1", "redis://cache/0?password=***&db=1"),
        (f"unix:///run/redis.sock?pass%77ord={SECRET}", "unix:///run/redis.sock?pass%77ord=***"),
        (f"postgres://app:{SECRET}@db/app", "postgres://app:***@db/app"),
        (f"https://q/x?X-Amz-Signature={SECRET}#f", "https://q/x?X-Amz-Signature=***#f"),
        (f"redis+cluster://:{SECRET}@host/1", "redis+cluster://:***@host/1"),
        (SECRET, "***"),  # not a URL: it may be the password itself
        ("redis://cache:6379/0", "redis://cache:6379/0"),
    ],
)
def test_redact_hides_credentials_of_any_url(url, shown):
    assert redact(url) == shown


def test_redact_text_hides_every_url_and_password_pair_in_a_message():
    text = f"Error connecting to 'redis://:{SECRET}@h:1/0'; retry with password={SECRET}"
    assert SECRET not in redact_text(text)
    assert "redis://:***@h:1/0" in redact_text(text)


def test_redact_text_takes_linear_time_in_a_long_run_of_scheme_characters():
    # Each record of the apps' loggers and each stored traceback goes through redact_text: a
    # task's error naming a hex dump of 50 KB took 5 s (a URL's scheme was looked for from each
    # letter of the run to its end).
    text = "3f2a" * 25_000
    started = time.perf_counter()
    assert redact_text(f"{text} redis://:{SECRET}@h/0") == f"{text} redis://:***@h/0"
    assert time.perf_counter() - started < 0.5


# redact_text's URLs as the first pattern found them: the scheme from the first letter of a run.
SLOW_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")


@given(st.text(alphabet="a1+.-:/@ x'?=", max_size=40))
def test_redact_text_finds_the_urls_it_found_before(text):
    assert redact_text(text) == redact_text_before(text)


def redact_text_before(text):
    from redis_endpoints import SECRET_PAIR

    text = SLOW_URL_IN_TEXT.sub(lambda found: redact(found.group()), text)
    return SECRET_PAIR.sub(lambda found: f"{found[1]}{found[2]}***", text)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RQ_REDIS_URL", f"redis+cluster://:{SECRET}@host/1"),  # the example
        ("REDIS_URL", f"memcached://:{SECRET}@host/1"),
        ("DATABASE_URL", f"nosuchdb://app:{SECRET}@db/app"),
        ("DATABASE_URL", f"postgres://app:{SECRET}@db:notaport/app"),
    ],
)
def test_settings_errors_name_the_variable_not_the_password(variable, value):
    # manage.py prints the refusal, one line (tests/site/test_prod_settings.py); here it is with
    # every exception chained to it, as a traceback of another entry point would show them.
    with pytest.raises(ImproperlyConfigured) as refused:
        load_settings("settings.test", {variable: value})
    assert variable in str(refused.value)
    assert SECRET not in "".join(traceback.format_exception(refused.value))


def test_system_check_messages_hide_the_password(settings):
    url = f"redis://default:{SECRET}@127.0.0.1:1/0?socket_timeout=1&password={SECRET}"
    for name, value in rq_settings(url).items():
        setattr(settings, name, value)
    errors = checks.run_checks(include_deployment_checks=True, tags=[checks.Tags.compatibility])
    unreachable = [error for error in errors if error.id == "queues.E003"]
    assert unreachable
    assert all(SECRET not in f"{error.msg} {error.hint}" for error in errors)
    assert "redis://default:***@127.0.0.1:1/0" in unreachable[0].msg


def record_with_a_secret():
    try:
        raise ConnectionError(f"cannot reach postgres://app:{SECRET}@db/app")
    except ConnectionError:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "queues.worker",
        logging.ERROR,
        __file__,
        1,
        "connecting to %s failed",
        (f"redis://:{SECRET}@cache/0",),
        exc_info,
    )


@pytest.mark.parametrize("formatter", [PlainFormatter(), JsonFormatter()])
def test_log_lines_hide_passwords_in_messages_and_tracebacks(formatter):
    line = formatter.format(record_with_a_secret())
    assert SECRET not in line
    assert "redis://:***@cache/0" in line
    assert "postgres://app:***@db/app" in line


def test_the_site_logs_through_the_redacting_formatters(settings):
    assert settings.LOGGING["formatters"]["plain"]["()"] == "casusult.jsonlog.PlainFormatter"
    assert settings.LOGGING["formatters"]["json"]["()"] == "casusult.jsonlog.JsonFormatter"
    assert json.loads(JsonFormatter().format(record_with_a_secret()))["level"] == "ERROR"


def test_the_apps_loggers_redact_a_record_before_any_handler_formats_it(caplog):
    # The apps log through redacting_logger: a project's own handlers and formatters (here
    # caplog's plain ones) get the record redacted, message, traceback, stack and extras alike.
    logger = redacting_logger("tests.redaction")
    assert redacting_logger("tests.redaction") is logger
    assert sum(isinstance(f, RedactingFilter) for f in logger.filters) == 1  # added once
    signed = f"https://sqs.example/1/q?X-Amz-Credential={SECRET}&X-Amz-Signature={SECRET}"
    try:
        raise ConnectionError(f"cannot reach postgres://app:{SECRET}@db:5432/app")
    except ConnectionError:
        logger.exception(
            "connecting to %s failed", f"rediss://:{SECRET}@cache:6380/2", extra={"url": signed}
        )
    logger.warning("no arguments, a %s kept as it is", stack_info=True)
    first, second = caplog.records
    assert first.getMessage() == "connecting to rediss://:***@cache:6380/2 failed"
    assert "postgres://app:***@db:5432/app" in first.exc_text
    assert first.exc_info is None  # no formatter formats the raw exception again
    assert first.url == "https://sqs.example/1/q?X-Amz-Credential=***&X-Amz-Signature=***"
    assert second.getMessage() == "no arguments, a %s kept as it is"
    assert SECRET not in caplog.text


def test_a_record_with_nothing_to_hide_keeps_its_template_and_exception(caplog):
    # An error tracker (Sentry) groups by the message template and reads the exception itself.
    logger = redacting_logger("tests.redaction")
    try:
        raise ValueError("no such post: 12")
    except ValueError:
        logger.exception("flush %s failed at %s", "f-1", "redis://cache:6379/0")
    (record,) = caplog.records
    assert (record.msg, record.args) == ("flush %s failed at %s", ("f-1", "redis://cache:6379/0"))
    assert record.exc_info[0] is ValueError


class Unprintable:
    def __str__(self):
        raise RuntimeError("a __str__ that fails")

    __repr__ = __str__


def test_a_record_that_cannot_be_printed_never_raises_into_the_caller(monkeypatch):
    # Logging reports a record it cannot format (Handler.handleError) and the call goes on: a
    # filter that raised would turn a log line into an exception in the view that logged it.
    logger = redacting_logger("tests.redaction.unprintable")
    handler = logging.Handler()
    handler.emit = lambda record: received.append(record)
    received = []
    monkeypatch.setattr(logger, "handlers", [handler])
    monkeypatch.setattr(logger, "propagate", False)  # pytest's handler raises what it cannot format
    logger.warning("left out: %s", Unprintable())
    assert len(received) == 1


@pytest.mark.parametrize("app", ["impressions", "queues"])  # redis_endpoints logs nothing
def test_the_apps_log_through_redacting_loggers_only(app):
    # A logging.getLogger() logger of theirs would hand its records to a project's handlers
    # unredacted. (queues.health adds a filter to django.request, whose records are Django's.)
    sources = sorted(Path(app).rglob("*.py"))
    assert sources
    plain = [
        f"{path}:{number}"
        for path in sources
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "logging.getLogger(" in line and '"django.request"' not in line
    ]
    assert plain == []


def test_a_refused_queue_url_is_named_without_its_password(settings, monkeypatch):
    # A URL with a proxy's credentials, and no queue name: refused by both checks, which name it.
    url = f"http://proxy:{SECRET}@127.0.0.1:1/"
    settings.TASKS = {
        "default": {"BACKEND": "queues.sqs.backend.SQSBackend", "OPTIONS": {"QUEUE_URL": url}}
    }
    monkeypatch.setenv("SQS_QUEUE_URL", url)
    errors = [e for e in checks.run_checks() if e.id in ("queues.E005", "casusult.E002")]
    assert sorted(e.id for e in errors) == ["casusult.E002", "queues.E005"]
    assert all("http://proxy:***@127.0.0.1:1/" in e.msg for e in errors)
    assert not any(SECRET in f"{e.msg}{e.hint}" for e in errors)


@pytest.mark.django_db
def test_the_queue_status_page_hides_credentials_in_an_error(admin_client, sqs_behind_a_proxy):
    page = admin_client.get("/admin/queues/queuestatus/")
    assert page.status_code == 200
    assert "EndpointConnectionError" in page.text  # the error is shown...
    assert SECRET not in page.text  # ...without the password
    assert "http://proxy:***@127.0.0.1:1" in page.text


@pytest.mark.django_db
def test_flush_now_hides_credentials_in_the_enqueue_error(admin_client, sqs_behind_a_proxy):
    # The flush task goes to that endpoint.
    page = admin_client.post(
        "/admin/impressions/flush/flush-now/", {"next": "/admin/impressions/flush/"}, follow=True
    )
    assert page.status_code == 200
    shown = [str(message) for message in page.context["messages"]]
    assert len(shown) == 1 and shown[0].startswith("Could not enqueue the flush:")  # said...
    assert "http://proxy:***@127.0.0.1:1" in shown[0]
    assert SECRET not in page.text  # ...without the password
