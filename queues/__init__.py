"""django.tasks backends (RQ, SQS), their workers and `runworker`."""
