#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.dev")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        settings.INSTALLED_APPS  # noqa: B018 - loads the settings: a bad variable fails here
    except ImproperlyConfigured as error:
        # One line naming the variable, not a 40-line traceback through importlib.
        sys.exit(f"error: {error}")

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
