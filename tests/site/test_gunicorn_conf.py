"""casusult/gunicorn_conf.py: gunicorn's own lines are JSON where Django's are (settings.prod)."""

import pytest

from tests.processes import run_python

PROBE = (
    "import casusult.gunicorn_conf as c; print('json' if hasattr(c, 'logconfig_dict') else 'plain')"
)


@pytest.mark.parametrize(
    ("settings_module", "log_format", "expected"),
    [
        ("settings.prod", None, "json"),  # unset: as settings.prod's own default
        ("settings.prod", "plain", "plain"),
        ("settings.dev", None, "plain"),
        ("settings.dev", "json", "json"),
    ],
)
def test_gunicorn_logs_as_the_settings_do(settings_module, log_format, expected):
    env = {"DJANGO_SETTINGS_MODULE": settings_module, "LOG_FORMAT": log_format}
    found = run_python(PROBE, env=env, timeout=60)
    assert found.returncode == 0, found.stderr
    assert found.stdout.split()[-1] == expected
