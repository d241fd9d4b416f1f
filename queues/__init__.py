"""django.tasks backends (RQ, SQS), their workers and `runworker`."""

# The distribution's version (distributions/queues/pyproject.toml reads it), semantic.
__version__ = "0.1.0"
