"""The reference pages name what the code has: every app setting, OPTIONS key, check id, command
and command option on its owner's page, and every variable the site's settings read.

A reader relies on those pages; a flag or setting added to the code and not to them is invisible.
"""

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest
from django.core.management import get_commands, load_command_class

from impressions import conf
from queues.rq.backend import RQBackend
from queues.sqs.backend import SQSBackend

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# Each command's owner page: the table row there whose first cell runs the command.
COMMAND_PAGES = {
    "flush_impressions": "impressions/settings.md",
    "rollup_impressions": "impressions/settings.md",
    "runworker": "queues/settings.md",
    "queue_stats": "queues/settings.md",
    "sqs_setup": "queues/settings.md",
    "sqs_redrive": "queues/settings.md",
    "seed_demo": "demo-site.md",
    "ensure_admin": "demo-site.md",
}
# django-rq's names, which the queues app keeps only to point to runworker (docs/queues/rq.md).
DISABLED_COMMANDS = {"rqworker", "rqworker-pool", "rqenqueue", "rqcron", "rqscheduler"}
# Every Django command has these.
DJANGO_OPTIONS = {
    "--help", "--version", "--verbosity", "--settings", "--pythonpath", "--traceback",
    "--no-color", "--force-color", "--skip-checks",
}  # fmt: skip
CHECK_ID = re.compile(r"\b(?:impressions|queues)\.[EW]\d{3}\b")


def page(name):
    return (DOCS / name).read_text()


def command_rows(command):
    """The first cells of the owner page's table rows that run `command`."""
    return [
        line.split(" | ")[0]
        for line in page(COMMAND_PAGES[command]).splitlines()
        if re.match(rf"\| `[^`]*manage\.py {re.escape(command)}\b", line)
    ]


def test_every_command_of_the_apps_and_the_site_has_an_owner_page():
    ours = {
        name for name, app in get_commands().items() if app in {"impressions", "queues", "casusult"}
    }
    assert ours - DISABLED_COMMANDS == set(COMMAND_PAGES)


@pytest.mark.parametrize("command", sorted(COMMAND_PAGES))
def test_a_command_row_names_exactly_the_command_options(command):
    parser = load_command_class(get_commands()[command], command).create_parser(
        "manage.py", command
    )
    options = {
        option
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--")
    }
    rows = command_rows(command)
    assert rows, f"no row runs {command} in docs/{COMMAND_PAGES[command]}"
    documented = set(re.findall(r"--[a-z][a-z-]*", " ".join(rows)))
    assert documented == options - DJANGO_OPTIONS


def test_every_impressions_setting_has_a_row_in_its_reference():
    rows = {
        match
        for line in page("impressions/settings.md").splitlines()
        for match in re.findall(r"^\| `(IMPRESSIONS_[A-Z_]+)`", line)
    }
    assert rows == set(conf.SETTINGS)


def test_every_queue_option_has_a_row_in_its_reference():
    text = page("queues/settings.md")
    rows = set(re.findall(r"^\| `([A-Z_]+)`(?: / `([A-Z_]+)`)?", text, re.M))
    documented = {name for row in rows for name in row if name}
    assert documented == set(RQBackend.option_defaults) | set(SQSBackend.option_defaults)


@pytest.mark.parametrize(
    ("module", "reference"),
    [
        ("impressions/checks.py", "impressions/settings.md"),
        ("queues/checks.py", "queues/settings.md"),
    ],
)
def test_every_check_id_of_an_app_has_a_row_in_its_reference(module, reference):
    table = (ROOT / module).read_text().split('"""')[1]
    rows = set(re.findall(r"^\| `([a-z]+\.[EW]\d{3})`", page(reference), re.M))
    assert rows == set(CHECK_ID.findall(table))


def test_every_variable_the_site_settings_read_is_in_the_production_reference():
    source = "\n".join(path.read_text() for path in (ROOT / "settings").glob("*.py"))
    variables = set(re.findall(r'env_\w+\(\s*"([A-Z][A-Z0-9_]+)"', source))
    variables |= set(re.findall(r'\(\s*"([A-Z][A-Z0-9_]+)",\s*env_\w+\)', source))  # OPTIONS'
    variables |= set(re.findall(r'"([A-Z][A-Z0-9_]+)":\s*(?:env_\w+|lambda)', source))  # from_env
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", page("operations/production.md")))
    assert {"DEBUG", "REDIS_URL", "SQS_JOB_TIMEOUT", "IMPRESSIONS_ENABLED"} <= variables
    assert variables - documented == set()


# `package.module.function(a, b, *, c=None)` as the pages write a call's signature (`f()` only
# names the function).
DOCUMENTED_CALL = re.compile(
    r"`((?:impressions|queues|redis_endpoints)(?:\.\w+)+)\(([\w, *=.]+)\)`"
)


def documented_calls():
    for path in sorted(DOCS.rglob("*.md")):
        for name, params in DOCUMENTED_CALL.findall(path.read_text()):
            yield pytest.param(name, params, id=f"{path.relative_to(DOCS)}: {name}({params})")


def resolve(dotted):
    module, _, attribute = dotted.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


def call_shape(params):
    """(positional count, keyword-only names, {name: default}) of a signature written as text; the
    names of required positional parameters are the page's to choose (`objects` for `posts`)."""
    positional, keyword_only, defaults, star = 0, [], {}, False
    for param in filter(None, (p.strip() for p in params.split(","))):
        if param == "*":
            star = True
            continue
        name, _, default = param.partition("=")
        if default:
            defaults[name] = default
        if star:
            keyword_only.append(name)
        elif not default:
            positional += 1
    return positional, keyword_only, defaults


def code_shape(function):
    signature = inspect.signature(function)
    positional, keyword_only, defaults = 0, [], {}
    for param in signature.parameters.values():
        if param.default is not param.empty:
            defaults[param.name] = repr(param.default)
        if param.kind is param.KEYWORD_ONLY:
            keyword_only.append(param.name)
        elif param.kind is param.POSITIONAL_OR_KEYWORD and param.default is param.empty:
            positional += 1
    return positional, keyword_only, defaults


@pytest.mark.parametrize(("name", "params"), list(documented_calls()))
def test_a_call_signature_the_pages_give_is_the_code_s(name, params):
    """A reader copies `record_impressions(key, ids, now=…)`: a keyword-only parameter written as
    positional, a default or a parameter the code does not have, fails their call."""
    assert call_shape(params) == code_shape(resolve(name))


def documented_default(cell):
    """The value a reference row's default cell starts with: a Python literal in backticks, or
    None for "none: **required**"-like cells."""
    if match := re.match(r"`([^`]+)`", cell.strip()):
        return ast.literal_eval(match[1])
    assert cell.strip().startswith("none"), cell
    return None


def test_each_impressions_setting_s_documented_default_is_conf_s():
    rows = re.findall(
        r"^\| `(IMPRESSIONS_[A-Z_]+)` \| ([^|]+) \|", page("impressions/settings.md"), re.M
    )
    documented = {name: documented_default(cell) for name, cell in rows}
    assert documented == {name: setting.default for name, setting in conf.SETTINGS.items()}


def test_each_queue_option_s_documented_default_is_its_backend_s():
    """Each row's default against every backend that has the option (a section's JOB_TIMEOUT is
    checked against both backends' defaults: they agree)."""
    rows = re.findall(
        r"^\| `([A-Z_]+)`(?: / `([A-Z_]+)`)? \| ([^|]+) \|", page("queues/settings.md"), re.M
    )
    found = {}
    for first, second, cell in rows:
        for name in filter(None, (first, second)):
            found.setdefault(name, set()).add(repr(documented_default(cell)))
    code = {}
    for backend in (RQBackend, SQSBackend):
        for name, default in backend.option_defaults.items():
            code.setdefault(name, set()).add(repr(default))
    assert found == code
