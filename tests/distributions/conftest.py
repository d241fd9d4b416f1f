"""Fixtures of the distribution tests: the wheels `make dist` builds, a fresh virtual environment
with them installed (once per session), fresh Django projects that follow the quick starts."""

import os
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path

import psycopg
import pytest
import redis
from django.conf import settings

import devservices
from tests.database import sibling_database_url

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


@pytest.fixture(scope="session")
def built_distributions(tmp_path_factory):
    """The folder with every wheel and sdist of distributions/build.py (what `make dist` runs)."""
    outdir = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, str(ROOT / "distributions" / "build.py"), str(outdir)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return outdir


def wheel(folder, distribution):
    [found] = folder.glob(f"{distribution.replace('-', '_')}-*.whl")
    return found


@pytest.fixture(scope="session")
def fresh_venv(tmp_path_factory, request):
    """A new virtual environment with the apps' wheels and their extras installed (pip's cache
    keeps the dependencies local); returns its bin/ folder. TEST_DISTRIBUTIONS_VENV names one
    made already instead (`make test-lowest`: the wheels on the lowest versions they declare).

    Made without pip of its own (ensurepip took seconds): this environment's pip installs into it
    with --python, resolving and installing as a pip inside would."""
    if prepared := os.environ.get("TEST_DISTRIBUTIONS_VENV"):
        return Path(prepared).resolve() / "bin"
    built_distributions = request.getfixturevalue("built_distributions")
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300
    )
    impressions_wheel = wheel(built_distributions, "casusult-impressions")
    queues_wheel = wheel(built_distributions, "casusult-queues")
    install = [
        sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
        "--disable-pip-version-check", "--no-compile", "--find-links", str(built_distributions),
        f"{impressions_wheel}[postgresql]", f"{queues_wheel}[rq,sqs]",
    ]  # fmt: skip
    completed = subprocess.run(install, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return venv / "bin"


def code_blocks(page):
    """[(directive, code)] of the quick start `page`: each fenced block after <!-- quickstart: … -->."""
    text = (DOCS / page).read_text()
    pattern = re.compile(
        r"<!-- quickstart: (?P<directive>[^>]+?) -->\n```[a-z]*\n(?P<code>.*?)```", re.S
    )
    return [(match["directive"], match["code"]) for match in pattern.finditer(text)]


class Project:
    """A Django project made with `django-admin startproject`, in the fresh virtual environment."""

    def __init__(self, bin_dir, path, env):
        self.bin, self.path, self.env = bin_dir, path, env

    def run(self, *args, check=True, timeout=300, **env):
        completed = subprocess.run(
            args, cwd=self.path, env={**self.env, **env}, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        if check:
            assert completed.returncode == 0, f"{args}:\n{completed.stdout}\n{completed.stderr}"
        return completed

    def manage(self, *args, **kwargs):
        return self.run(str(self.bin / "python"), "manage.py", *args, **kwargs)

    def start_manage(self, *args):
        return subprocess.Popen(
            [str(self.bin / "python"), "manage.py", *args], cwd=self.path, env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    def shell(self, code):
        return self.manage("shell", "--no-imports", "-c", code).stdout

    def apply(self, page, replacements, append="append"):
        """Apply the quick start `page` verbatim (file blocks, and the blocks of kind `append`
        appended to their file), but for `replacements` of its example addresses by this test's
        services; returns the other blocks (pip, run, other variants) as (kind, code)."""
        commands = []
        # One pass: replacing one address after another would rewrite the previous replacement
        # when it starts with a later example (a test's redis://…:6379/31 holds the example …:6379/3).
        examples = re.compile("|".join(map(re.escape, sorted(replacements, key=len, reverse=True))))
        for directive, code in code_blocks(page):
            if replacements:
                code = examples.sub(lambda match: replacements[match[0]], code)
            kind, _, target = directive.partition(" ")
            if kind == "file":
                (self.path / target).write_text(code)
            elif kind == append:
                with (self.path / target).open("a") as file:
                    file.write("\n" + code)
            else:
                commands.append((kind, code))
        return commands


@pytest.fixture
def new_project(fresh_venv, tmp_path):
    """new_project(*apps): `django-admin startproject mysite` plus `startapp` of each app."""

    def make(*apps):
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DJANGO_", "REDIS_", "RQ_", "DATABASE_", "PYTHON"))
        }
        env["PATH"] = f"{fresh_venv}{os.pathsep}{env.get('PATH', '')}"
        path = tmp_path / "mysite"
        path.mkdir()
        project = Project(fresh_venv, path, env)
        project.run(str(fresh_venv / "django-admin"), "startproject", "mysite", str(path))
        for app in apps:
            project.manage("startapp", app)
        return project

    return make


@pytest.fixture
def quickstart_database():
    """A PostgreSQL database of its own on the tests' server (dropped after), as a dict of the
    quick start's DATABASES keys."""
    url = urllib.parse.urlsplit(sibling_database_url("quickstart"))
    name = url.path.lstrip("/")
    admin = f"postgresql://{url.netloc}/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    yield {"NAME": name, "USER": url.username or "postgres", "HOST": url.hostname or "127.0.0.1",
           "PORT": url.port or 5432}  # fmt: skip
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def quickstart_redis():
    """Two Redis URLs of the tests' server (buffer, RQ), emptied before and after."""
    urls = (settings.IMPRESSIONS_REDIS_URL, settings.RQ_REDIS_URL)
    clients = [redis.Redis.from_url(url) for url in urls]
    for client in clients:
        client.flushdb()
    yield urls
    for client in clients:
        client.flushdb()
        client.close()


@pytest.fixture
def quickstart_services(quickstart_database, quickstart_redis):
    """Project.apply()'s replacements of the impressions quick start's example addresses (its
    buffer's and RQ's Redis, its PostgreSQL database) by this test's."""
    buffer_url, rq_url = quickstart_redis
    database = quickstart_database
    return {
        "redis://127.0.0.1:6379/2": buffer_url,
        "redis://127.0.0.1:6379/3": rq_url,
        '"NAME": "mysite"': f'"NAME": "{database["NAME"]}", "PORT": {database["PORT"]}',
        '"USER": "postgres"': f'"USER": "{database["USER"]}"',
        '"HOST": "127.0.0.1"': f'"HOST": "{database["HOST"]}"',
    }


@pytest.fixture
def free_port():
    return devservices.free_port()
