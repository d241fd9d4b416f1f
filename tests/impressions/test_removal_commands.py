"""The quick start's removal step 3 (docs/impressions/quickstart.md), run verbatim on each primary:
it deletes every key of the buffer and no other key, on standalone Redis and on a cluster, whose
nodes refuse a command naming keys of several hash slots (CROSSSLOT)."""

import re
import subprocess
import textwrap
from pathlib import Path

import redis
from django.test import override_settings
from redis.cluster import RedisCluster

from impressions import keys
from impressions.recorder import record_impressions

from .test_neighbours import PREFIXES, every_key

QUICKSTART = Path(__file__).resolve().parents[2] / "docs" / "impressions" / "quickstart.md"
EXAMPLE_URL = "URL=redis://127.0.0.1:6379/2"
# Keys of other projects and apps on the same server: not the buffer's, so they must stay. Those
# of the prefixes "imp:3", "imp:ip", "imp:" and "imp-2" too, in tags that start as "imp"'s do.
FOREIGN = ["other:1", "other:2", "other:3", "{impx}:pending", "imp:totals", "{other}:imp"]
FOREIGN += ["{imp:3}:flush-scheduled", "{imp:3}:salt:20261207", "{imp:3:0}:pending:1"]
FOREIGN += ["{imp:ip:0}:pending:1", "{imp:ip:0}:seen:u:1", "{imp:}:flush-scheduled"]
FOREIGN += ["{imp-2:0}:totals", "{imp:x}:k"]


def removal_commands():
    """The shell block of step 3 of "Remove", as an operator copies it."""
    step = QUICKSTART.read_text().split("3. Delete the buffer's keys", 1)[1].split("\n4. ", 1)[0]
    [block] = re.findall(r"```\n(.*?)```", step, re.S)
    return textwrap.dedent(block)


def test_the_removal_commands_tell_the_buffer_s_keys_as_the_app_does():
    """OWN (grep -E) matches what keys.own_keys("imp") does, of every key of every prefix."""
    [own] = re.findall(r"^OWN='(.*)'$", removal_commands(), re.M)
    made = []
    for prefix in PREFIXES:
        with override_settings(IMPRESSIONS_KEY_PREFIX=prefix):
            made += every_key()
    grep = subprocess.run(
        ["grep", "-E", own], input="\n".join(made), capture_output=True, text=True, timeout=10
    )
    expected = [key for key in made if keys.own_keys("imp").match(key.encode())]
    assert grep.stdout.split() == expected
    assert len(expected) > 40


def primary_urls(client):
    """The redis:// URL of each primary holding the buffer."""
    if isinstance(client, RedisCluster):
        return [f"redis://{node.host}:{node.port}/0" for node in client.get_primaries()]
    kwargs = client.connection_pool.connection_kwargs
    return [f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"]


def keys_at(url):
    client = redis.Redis.from_url(url)
    try:
        return [key.decode() for key in client.scan_iter(count=1000)]
    finally:
        client.close()


def test_the_removal_commands_delete_the_buffer_s_keys_and_no_other(buffer):
    for viewer in range(60):
        record_impressions(f"u:{viewer}", [1, 2, 3, 1001 + viewer])
    for key in FOREIGN:
        buffer.set(key, "kept")
    urls = primary_urls(buffer)
    assert sum(len(keys_at(url)) for url in urls) > 60  # the buffer's keys, on every node
    commands = removal_commands()
    assert commands.startswith(EXAMPLE_URL + "\n")

    for url in urls:
        script = commands.replace(EXAMPLE_URL, f"URL={url}", 1)
        completed = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, timeout=60
        )
        assert completed.returncode == 0, completed.stdout + completed.stderr

    assert sorted(key for url in urls for key in keys_at(url)) == sorted(FOREIGN)
