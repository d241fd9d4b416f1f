"""The app servers refuse to start with a bad setting, listing every one, as manage.py does."""

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


def test_a_good_configuration_starts():
    assert import_application("casusult.wsgi", {}).returncode == 0
