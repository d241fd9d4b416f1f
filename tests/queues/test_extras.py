"""An install without a backend's extra: the queues app's own modules import, the backend and
its commands say what to pip install (not a bare ModuleNotFoundError). Fresh interpreters, with
the extras' modules made unimportable."""

import textwrap

from tests.processes import run_python

SCRIPT = """
import importlib
import pkgutil
import sys

for module in BLOCKED:
    sys.modules[module] = None  # import raises ImportError, as when not installed

import django
from django.conf import settings

settings.configure(
    INSTALLED_APPS=[
        "django.contrib.admin", "django.contrib.contenttypes", "django.contrib.auth",
        "django.contrib.sessions", "django.contrib.messages", "queues",
    ],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    TASKS={"default": {"BACKEND": BACKEND}},
)
try:
    django.setup()
    from django.tasks import task_backends

    task_backends["default"]
except Exception as error:
    print("setup:", type(error).__name__, error)

import queues

for info in pkgutil.walk_packages(queues.__path__, "queues."):
    if not info.name.startswith(("queues.rq", "queues.sqs")):
        importlib.import_module(info.name)
print("imported")
from django.core.management import CommandError, call_command

for command in ("sqs_setup", "sqs_redrive"):
    try:
        call_command(command)
    except CommandError as error:
        print(command + ":", error)
"""


def run(blocked, backend="django.tasks.backends.immediate.ImmediateBackend"):
    code = f"BLOCKED = {blocked!r}\nBACKEND = {backend!r}\n" + textwrap.dedent(SCRIPT)
    found = run_python(code, timeout=60)
    assert found.returncode == 0, found.stderr
    return found.stdout


def test_without_the_sqs_extra_its_commands_and_backend_name_the_pip_command():
    out = run(["boto3", "botocore"], backend="queues.sqs.backend.SQSBackend")
    install = 'pip install "casusult-queues[sqs]"'
    assert "imported" in out  # the app's own modules need no extra
    assert "setup: InvalidTaskBackend" in out and install in out.splitlines()[0]
    assert f"sqs_setup: the sqs backend needs boto3, botocore: {install}" in out
    assert f"sqs_redrive: the sqs backend needs boto3, botocore: {install}" in out


def test_without_the_rq_extra_the_rq_backend_names_the_pip_command():
    out = run(["rq", "redis", "django_rq"], backend="queues.rq.backend.RQBackend")
    assert "imported" in out
    first = out.splitlines()[0]
    assert first.startswith("setup: InvalidTaskBackend") and "needs rq, redis, django_rq" in first
    assert 'pip install "casusult-queues[rq]"' in first
