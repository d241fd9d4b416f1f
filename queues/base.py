"""What our queue backends share: OPTIONS validation, the worker's dotted path, the check hook."""

from django.tasks.backends.base import BaseTaskBackend

from .exceptions import QueueConfigurationError


class QueueBackend(BaseTaskBackend):
    """Base for the RQ and SQS backends: rejects unknown OPTIONS keys, naming the alias."""

    # OPTIONS keys this backend understands, with their defaults.
    option_defaults = {}
    # Dotted path of the class that runs this backend's tasks; `runworker` imports it. The backend
    # never imports its worker (the worker imports its backend).
    worker_class = None

    def __init__(self, alias, params):
        super().__init__(alias, params)
        unknown = sorted(set(self.options) - set(self.option_defaults))
        if unknown:
            raise QueueConfigurationError(
                f"TASKS[{alias!r}]['OPTIONS'] has unknown key(s) {', '.join(unknown)}; "
                f"{type(self).__name__} accepts: {', '.join(sorted(self.option_defaults))}."
            )
        self.options = {**self.option_defaults, **self.options}

    def option_error(self, message):
        return QueueConfigurationError(f"TASKS[{self.alias!r}]['OPTIONS']: {message}")

    def check(self, *, deploy=False, **kwargs):
        """System check errors; with `deploy`, also those found by reaching the server.

        django.tasks runs check() on every command; queues.checks adds check(deploy=True) to
        `check --deploy`.
        """
        return super().check(**kwargs)
