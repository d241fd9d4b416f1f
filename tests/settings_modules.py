"""Load a settings module afresh, in this process, under another environment.

What `manage.py` would configure with that environment, without starting it: the tests of how a
variable becomes a setting (or a refusal naming it) need no new interpreter for each value. The
settings modules read only the environment (the settings-stand-alone import rule), so a fresh
execution of them is what a new process would see.
"""

import importlib
import os
import sys
import warnings


def _settings_modules():
    return [name for name in sys.modules if name == "settings" or name.startswith("settings.")]


def load_settings(module="settings.test", env=None):
    """Execute `module` and the settings package it imports anew, with os.environ changed by `env`
    (a None value unsets the variable), and return the new module. Its exception (a variable
    that does not parse) propagates. This process's settings modules, environment and warning
    filters are left as they were."""
    saved_modules = {name: sys.modules.pop(name) for name in _settings_modules()}
    saved_env = {name: os.environ.get(name) for name in env or {}}
    try:
        for name, value in (env or {}).items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        with warnings.catch_warnings():
            return importlib.import_module(module)
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for name in _settings_modules():
            del sys.modules[name]
        sys.modules.update(saved_modules)


def setting_values(module, prefix=""):
    """{name: value} of the settings `module` defines (upper-case names, as Django reads them)."""
    return {
        name: getattr(module, name)
        for name in dir(module)
        if name.isupper() and name.startswith(prefix)
    }
