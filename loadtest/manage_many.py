"""`python -m loadtest.manage_many '["migrate", "--noinput"]' '["collectstatic", "--noinput"]'`.

Runs manage.py commands one after another in one process, each as `manage.py <command>` runs it
(Django's ManagementUtility: the same argument parsing, system checks and exit status), stopping
at the first that fails. The load test prepares its stack with it: one Django start-up (a second
or two on a loaded 2-core machine) instead of one per command.
"""

import json
import sys

from django.core.management import execute_from_command_line


def main(argv):
    for command in argv:
        execute_from_command_line(["manage.py", *json.loads(command)])


if __name__ == "__main__":
    main(sys.argv[1:])
