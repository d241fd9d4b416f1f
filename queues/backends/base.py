"""What our queue backends share: OPTIONS validation and lazy imports of their SDKs."""

import importlib

from django.tasks.backends.base import BaseTaskBackend

from ..exceptions import MissingDependency, QueueConfigurationError


def import_dependency(module, package):
    """Import an optional SDK, or fail with an error that names the package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependency(
            f"The {package!r} package is required for this task backend: pip install {package}."
        ) from error


class QueueBackend(BaseTaskBackend):
    """Base for the RQ and SQS backends: rejects unknown OPTIONS keys, naming the alias."""

    # OPTIONS keys this backend understands, with their defaults.
    option_defaults = {}

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

    def make_worker(self, **kwargs):
        """Return the Worker that runs this backend's tasks (see queues.workers)."""
        raise NotImplementedError
