"""The app servers refuse to start with a bad setting, listing every one, as manage.py does."""

import subprocess
import sys

from tests.processes import PROJECT_DIR, manage_env


def import_application(module, env):
    return subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=PROJECT_DIR, env=manage_env(env), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_wsgi_and_asgi_refuse_every_bad_setting_at_once():
    env = {"IMPRESSIONS_FLUSH_DELAY": "-1", "QUEUE_BACKEND": "sqs", "SQS_QUEUE_NAME": "q",
           "SQS_MAX_MESSAGES": "11"}  # fmt: skip
    for module in ("casusult.wsgi", "casusult.asgi"):
        result = import_application(module, env)
        assert result.returncode != 0
        assert "impressions.E005" in result.stderr and "IMPRESSIONS_FLUSH_DELAY" in result.stderr
        assert "queues.E005" in result.stderr and "MAX_MESSAGES" in result.stderr


def test_a_good_configuration_starts():
    assert import_application("casusult.wsgi", {}).returncode == 0
