"""manage.py rqworker (django-rq's), disabled: see queues.management.disabled."""

from queues.management.disabled import disabled_command

Command = disabled_command(
    "rqworker",
    "runworker is the worker command for every task backend (RQ's scheduler, the cluster-mode probe, one log line per task); use manage.py runworker.",
)
