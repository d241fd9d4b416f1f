"""django-rq's commands that cannot run our jobs are disabled, saying what to use instead."""

import pytest
from django.core.management import CommandError, call_command


@pytest.mark.parametrize(
    ("command", "instead"),
    [
        ("rqworker", "runworker"),
        ("rqworker-pool", "runworker --concurrency"),
        ("rqenqueue", ".enqueue()"),
        ("rqcron", "cron"),
        ("rqscheduler", "runworker"),
    ],
)
def test_django_rq_commands_that_cannot_run_our_jobs_are_disabled(command, instead):
    with pytest.raises(CommandError, match=f"manage.py {command} is disabled") as refusal:
        call_command(command, "os.system")
    assert instead in str(refusal.value)
