"""manage.py rqcron (django-rq's), disabled: see queues.management.disabled."""

from queues.management.disabled import disabled_command

Command = disabled_command(
    "rqcron",
    "cron jobs call plain functions, which our worker refuses (it runs django.tasks tasks only); schedule manage.py commands with cron or EventBridge instead.",
)
