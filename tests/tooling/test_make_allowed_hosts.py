"""The ALLOWED_HOSTS `make run` and `make serve` give the site: the loopback names, HOST, and for a
wildcard HOST this machine's names; read without starting anything (a stand-in prerequisite of
`run` prints what its recipes would see, then stops make)."""

import os
import subprocess

import pytest

from tests.processes import PROJECT_DIR


def allowed_hosts(*args, path_first=None, **env):
    environ = {**os.environ, "DJANGO_SETTINGS_MODULE": "settings.dev", **env}  # make run's
    if path_first:
        environ["PATH"] = f"{path_first}:{environ['PATH']}"
    if "ALLOWED_HOSTS" not in env:
        environ.pop("ALLOWED_HOSTS", None)
    done = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-o",
            "migrate",
            "--eval",
            "run: hq-show",
            "--eval",
            'hq-show: ; @echo "ALLOWED_HOSTS=[$$ALLOWED_HOSTS]"; exit 3',
            "run",
            *args,
        ],
        cwd=PROJECT_DIR,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    [line] = [x for x in done.stdout.splitlines() if x.startswith("ALLOWED_HOSTS=")]
    stray = [x for x in done.stderr.splitlines() if "hq-show" not in x]
    return line.removeprefix("ALLOWED_HOSTS=[").removesuffix("]").split(","), stray


@pytest.fixture
def no_hostname(tmp_path):
    """A PATH directory whose `hostname` fails as a missing command does (minimal images of
    Fedora, UBI and others have none)."""
    fake = tmp_path / "hostname"
    fake.write_text('#!/bin/sh\necho "hostname: command not found" >&2\nexit 127\n')
    fake.chmod(0o755)
    return tmp_path


def test_a_named_host_is_allowed_besides_the_loopback_names():
    hosts, stray = allowed_hosts("HOST=MyVM.Example")
    assert hosts == ["127.0.0.1", "localhost", "[::1]", "MyVM.Example"]
    assert stray == []


def test_the_environment_s_allowed_hosts_wins():
    hosts, _ = allowed_hosts("HOST=0.0.0.0", ALLOWED_HOSTS="a.example,b.example")
    assert hosts == ["a.example", "b.example"]


def test_a_wildcard_host_without_the_hostname_command_says_nothing_and_keeps_the_name(
    no_hostname,
):
    hosts, stray = allowed_hosts("HOST=0.0.0.0", path_first=no_hostname)
    assert stray == []
    assert hosts[:3] == ["127.0.0.1", "localhost", "[::1]"]
    assert os.uname().nodename in hosts


def test_production_settings_get_no_allowed_hosts_filled_in():
    """settings.prod refuses to start without ALLOWED_HOSTS, naming it: `make serve` with them
    must not start on names the Makefile made up."""
    hosts, _ = allowed_hosts("HOST=0.0.0.0", DJANGO_SETTINGS_MODULE="settings.prod")
    assert hosts == [""]
