"""manage.py rqenqueue (django-rq's), disabled: see queues.management.disabled."""

from queues.management.disabled import disabled_command

Command = disabled_command(
    "rqenqueue",
    "it queues any callable, which our worker refuses (it runs django.tasks tasks only); enqueue a @task with .enqueue().",
)
