"""The optional dependencies of each backend (the distribution's extras): an install without one
gets an error that says what to install, not a bare ModuleNotFoundError."""

from importlib.util import find_spec

from django.core.management.base import CommandError

# extra -> the modules it installs that the backend imports
EXTRAS = {"rq": ("rq", "redis", "django_rq"), "sqs": ("boto3", "botocore")}


def missing(extra):
    """The modules of `extra` that cannot be imported."""
    return [module for module in EXTRAS[extra] if find_spec(module) is None]


def require(extra):
    """Raise ImportError naming the pip command when a module of `extra` is missing. Django's
    task backends handler puts this message in its InvalidTaskBackend."""
    if absent := missing(extra):
        raise ImportError(
            f"the {extra} backend needs {', '.join(absent)}:"
            f' pip install "casusult-queues[{extra}]"',
            name=absent[0],
        )


def command_requires(extra):
    """require() for a management command: CommandError, one line, no traceback."""
    try:
        require(extra)
    except ImportError as error:
        raise CommandError(str(error)) from None
