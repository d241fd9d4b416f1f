"""Each app setting's default and limits are defined once, in the app: the site only maps variables.

Two checks. Loaded with none of the site's variables set, the settings modules set no app setting
beyond what only the site can say (its counted model, its dashboard panel, its tests' Redis and
allow-list), so every default comes from the app. And no env reader in settings/ is given limits
for an app's setting: those live in the app's conf.py or OPTIONS rules and its system checks.
"""

import ast
import re
from pathlib import Path

import pytest

from impressions import conf
from queues.rq.backend import RQBackend
from queues.sqs.backend import SQSBackend
from tests.settings_modules import load_settings, setting_values

SETTINGS_DIR = Path(__file__).resolve().parents[2] / "settings"
# The variables settings/ maps to the apps' settings and OPTIONS (docs/operations/production.md).
APP_VARIABLES = [
    "REDIS_URL", "RQ_REDIS_URL", "QUEUE_BACKEND", "TASKS_MAX_ATTEMPTS", "TASKS_RETRY_DELAY",
    "TASK_MODULES", "RQ_JOB_TIMEOUT", "SQS_QUEUE_URL", "SQS_QUEUE_NAME", "SQS_WAIT_TIME_SECONDS",
    "SQS_MAX_MESSAGES", "SQS_VISIBILITY_TIMEOUT", "SQS_JOB_TIMEOUT", "READINESS_TIMEOUT",
    *(name for name in conf.SETTINGS),
]  # fmt: skip
# What only the site can say, per settings module.
SITE_CHOICES = {"IMPRESSIONS_MODEL", "IMPRESSIONS_COUNT_FIELD", "IMPRESSIONS_DASHBOARD_PANELS"}
# The tests' own Redis db, never the developer's db 0; the record call's budget on a loaded machine.
TEST_CHOICES = {"IMPRESSIONS_REDIS_URL", "IMPRESSIONS_REDIS_TIMEOUT"}


def loaded_settings(module, **env):
    """What `module` sets, loaded afresh with none of the site's variables but `env`."""
    s = load_settings(module, {**dict.fromkeys(APP_VARIABLES), **env})
    return {
        "impressions": sorted(setting_values(s, prefix="IMPRESSIONS_")),
        "options": sorted(k for t in s.TASKS.values() for k in t.get("OPTIONS", {})),
        "rq_queues": sorted(k for q in s.RQ_QUEUES.values() for k in q),
        "readiness": "READINESS_TIMEOUT" in setting_values(s),
    }


@pytest.mark.parametrize(
    ("module", "env", "site_choices", "options"),
    [
        ("settings.dev", {}, SITE_CHOICES, []),
        ("settings.test", {"QUEUE_BACKEND": "rq"}, SITE_CHOICES | TEST_CHOICES, ["TASK_MODULES"]),
        (
            "settings.prod",
            {
                "SECRET_KEY": "prod-like-" + "abcdefghij" * 5,
                "DATABASE_URL": "postgres://app@db.internal:5432/casusult",
                "ALLOWED_HOSTS": "casusult.example.com",
                "QUEUE_BACKEND": "sqs",
                "SQS_QUEUE_NAME": "casusult",
            },
            SITE_CHOICES,
            ["QUEUE_NAME"],
        ),
    ],
)
def test_unset_variables_leave_the_apps_defaults(module, env, site_choices, options):
    loaded = loaded_settings(module, **env)
    assert set(loaded["impressions"]) == site_choices
    assert loaded["options"] == options  # no MAX_ATTEMPTS, JOB_TIMEOUT, … copied from a backend
    assert set(loaded["rq_queues"]) <= {"URL", "SERIALIZER"}  # the connection, nothing else
    assert loaded["readiness"] is False  # casusult/health.py has its default


def app_setting_names():
    return (
        set(conf.SETTINGS)
        | {f"TASKS_{key}" for key in RQBackend.option_defaults}
        | {f"RQ_{key}" for key in RQBackend.option_defaults}
        | {f"SQS_{key}" for key in SQSBackend.option_defaults}
        | {"TASK_MODULES"}
    )


def test_settings_give_no_default_or_limit_for_an_app_setting():
    """Every env reader call in settings/ for an app's variable has no default and no limits."""
    names = app_setting_names()
    readers_with_values = []
    for path in sorted(SETTINGS_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", "").startswith("env_")):
                continue
            first = node.args[0] if node.args else None
            if not (isinstance(first, ast.Constant) and first.value in names):
                continue
            if len(node.args) > 1 or node.keywords:
                readers_with_values.append(f"{path.name}:{node.lineno} {first.value}")
    assert readers_with_values == []


def test_the_impressions_app_reads_only_the_settings_it_defines():
    """Every IMPRESSIONS_* name in the app's code has its one row in conf.SETTINGS."""
    package = Path(conf.__file__).parent
    named = set()
    for path in package.rglob("*.py"):
        named |= {
            node.value
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and re.fullmatch(r"IMPRESSIONS_[A-Z_]*[A-Z]", node.value)
            and node.value != "IMPRESSIONS_REDIS"  # the prefix of a setting_changed test
        }
    assert named <= set(conf.SETTINGS)
