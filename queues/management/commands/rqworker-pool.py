"""manage.py rqworker-pool (django-rq's), disabled: see queues.management.disabled."""

from queues.management.disabled import disabled_command

Command = disabled_command(
    "rqworker-pool",
    "runworker is the worker command for every task backend; use manage.py runworker --concurrency N.",
)
