"""manage.py rqscheduler (django-rq's), disabled: see queues.management.disabled."""

from queues.management.disabled import disabled_command

Command = disabled_command(
    "rqscheduler",
    "it needs rq-scheduler, which this project does not use: `run_after` and retry delays are"
    " scheduled by RQ's own scheduler, which `manage.py runworker` runs.",
)
