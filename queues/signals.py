"""Signals for observability: the project connects metrics to them; the workers need not know."""

from django.dispatch import Signal

# A ReceiveMessage call failed (the worker backs off and tries again). Arguments: error.
sqs_receive_failed = Signal()
