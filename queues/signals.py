"""Signals for observability: the project connects metrics to them; the workers need not know."""

from django.dispatch import Signal

# A ReceiveMessage call failed (the worker backs off and tries again). Arguments: error.
sqs_receive_failed = Signal()

# A worker refused a job or message without running it. Arguments: backend (the TASKS alias) and
# reason: "not-allowed" (task path outside the allowed modules, never imported), "malformed" (an
# unreadable message) or "refused" (not a django.tasks Task, or not a job of ours).
task_refused = Signal()
