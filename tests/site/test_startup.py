"""The app servers refuse to start with a bad setting, listing every one, as manage.py does;
with good ones they start, connected to nothing yet."""

import os
import secrets

from tests.processes import run_python


def import_application(module, env):
    return run_python(f"import {module}", env)


def test_wsgi_and_asgi_refuse_every_bad_setting_at_once():
    env = {"IMPRESSIONS_FLUSH_DELAY": "-1", "QUEUE_BACKEND": "sqs", "SQS_QUEUE_NAME": "q",
           "SQS_MAX_MESSAGES": "11"}  # fmt: skip
    for module in ("casusult.wsgi", "casusult.asgi"):
        result = import_application(module, env)
        assert result.returncode != 0
        assert "impressions.E005" in result.stderr and "IMPRESSIONS_FLUSH_DELAY" in result.stderr
        assert "queues.E005" in result.stderr and "MAX_MESSAGES" in result.stderr


# The process's TCP connections (sockets of /proc/self/fd not listening), counted after the import.
CONNECTIONS_AFTER_IMPORT = """
import os, re
import casusult.wsgi
inodes = set()
for fd in os.listdir("/proc/self/fd"):
    try:
        inodes.update(re.findall(r"socket:\\[(\\d+)\\]", os.readlink(f"/proc/self/fd/{fd}")))
    except OSError:
        pass
connected = []
for table in ("tcp", "tcp6"):
    with open(f"/proc/self/net/{table}") as lines:
        for line in list(lines)[1:]:
            fields = line.split()
            if fields[9] in inodes and fields[3] != "0A":  # 0A: listening
                connected.append(fields[2])
print(len(connected))
"""


def test_a_good_configuration_starts_and_connects_nothing():
    """uWSGI by default (and gunicorn --preload) loads the app in its master, then forks the
    workers: a connection made while loading would be every worker's, and replies read by one
    would be another's. Loading (the checks, the SQS client's warm-up) connects nothing."""
    env = {
        "DJANGO_SETTINGS_MODULE": "settings.prod",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "testserver",
        "DATABASE_URL": os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"),
        "QUEUE_BACKEND": "sqs",
        "SQS_QUEUE_URL": "http://127.0.0.1:9/123456789012/q",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "LOG_FORMAT": "plain",
        "DEBUG": None,
    }
    result = run_python(CONNECTIONS_AFTER_IMPORT, env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "0"
