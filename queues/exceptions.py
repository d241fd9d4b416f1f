"""Errors raised by the queue backends and workers."""

from django.core.exceptions import ImproperlyConfigured


class QueueConfigurationError(ImproperlyConfigured):
    """A TASKS entry for one of our backends is wrong (unknown option, missing queue, ...)."""


class ClusterModeRedis(ImproperlyConfigured):
    """RQ was pointed at a cluster-mode (or proxy-sharded) Redis/Valkey, which it cannot use."""


class RefusedJob(Exception):
    """A queued job names something other than a django.tasks Task; it is not executed."""


class TaskNotAllowed(RefusedJob):
    """A queued job names a task outside the allowed modules; it was not even imported."""


class MalformedMessage(ValueError):
    """A queue message is not valid JSON, has an unknown version, or lacks a field."""


class ForcedStop(SystemExit):
    """A second stop signal: the worker exits at once, the running task with it (its message or
    job comes back). Not the task's failure: the task's own SystemExit (sys.exit()) is one."""


class TaskExited(Exception):
    """A task raised SystemExit (sys.exit()), KeyboardInterrupt or another BaseException that is no
    Exception: its attempt failed, as any error's (its class in TaskResult.errors), and the worker
    goes on."""
