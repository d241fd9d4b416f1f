"""The task registry: the django.tasks Tasks a worker runs, found by importing modules at start.

As Celery's autodiscover_tasks: the `tasks` module of every installed app, plus the modules a
backend's OPTIONS["TASK_MODULES"] lists, are imported once; every Task they hold is registered
under its module_path. A queue message's task path is then only looked up here, never imported:
importing a module runs its code, so a message must not choose which module is imported.
"""

from importlib import import_module

from django.apps import apps
from django.tasks import Task
from django.utils.module_loading import module_has_submodule

from redis_endpoints import redact_text

from .exceptions import QueueConfigurationError

# The module every installed app may define its tasks in (an app without one is fine).
APP_TASKS_MODULE = "tasks"


def app_task_modules():
    """The imported `tasks` module of each installed app that has one.

    A tasks module that fails to import fails the caller (the worker's start): a worker that
    silently ran without an app's tasks would refuse them all.
    """
    modules = []
    for config in apps.get_app_configs():
        if module_has_submodule(config.module, APP_TASKS_MODULE):
            modules.append(import_module(f"{config.name}.{APP_TASKS_MODULE}"))
    return modules


def listed_modules(names, where):
    """The modules `names` (OPTIONS["TASK_MODULES"]), imported; a failure names the option."""
    modules = []
    for name in names:
        try:
            modules.append(import_module(name))
        except Exception as error:
            raise QueueConfigurationError(
                f"{where}['TASK_MODULES'] lists {name!r}, which cannot be imported: {redact_text(repr(error))}"
            ) from error
    return modules


def task_module_problems(names):
    """[(name, why)] of each module `names` lists that a worker would register no task from: one
    that cannot be imported, or defines no Task (a package, say: its submodules are not read)."""
    problems = []
    for name in names:
        try:
            module = import_module(name)
        except Exception as error:
            problems.append((name, f"which cannot be imported: {redact_text(repr(error))}"))
            continue
        if not any(isinstance(value, Task) for value in vars(module).values()):
            problems.append((name, "which defines no task (a package's submodules are not read)"))
    return problems


def discover_tasks(task_modules=(), where="TASKS"):
    """{module_path: Task} of the installed apps' tasks modules and the modules `task_modules`."""
    registry = {}
    for module in [*app_task_modules(), *listed_modules(task_modules, where)]:
        for value in vars(module).values():
            if isinstance(value, Task):
                # The first found: a module's own task before a .using() variant of it.
                registry.setdefault(value.module_path, value)
    return registry
