"""No command the buffer sends has more arguments than ElastiCache Serverless takes (3,999, the
command's name included: redis_client.MAX_ARGS), however many objects a call names; and none
that docs/operations/aws.md does not name among the commands Serverless is asked.

Counted on the server: MONITOR prints each command a client sent, every argument quoted. A
standalone Redis and a cluster of our own, so that no other client's commands show.
"""

import re
import socket
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import override_settings
from django.utils import timezone

from casusult.models import Post
from impressions import flush as flush_module
from impressions import keys, recorder
from impressions.conf import conf
from impressions.recorder import pending_counts, pending_status, record_impressions
from impressions.redis_client import MAX_ARGS
from tests.factories import insert_posts, make_user

from .conftest import buffer_at
from .support import DUMMY_TASKS, every_buffer_path

OBJECTS = 10_000
# MONITOR's line: `<time> [<db> <client address>] "arg" "arg" …`; `[<db> lua]` for the commands a
# script ran, which are no request of a client.
LINE = re.compile(r"^\+?[0-9.]+ \[[0-9]+ ([^\]]+)\] (.*)$")
ARGUMENT = re.compile(r'"(?:[^"\\]|\\.)*"')


class Monitor:
    """MONITOR on each of `ports` while the block runs; `commands`: [[argument, …]] that clients
    sent (each as MONITOR quotes it), over every port."""

    def __init__(self, ports):
        self.ports = ports
        self.commands = []

    def __enter__(self):
        self.sockets = []
        for port in self.ports:
            connection = socket.create_connection(("127.0.0.1", port), timeout=10)
            connection.sendall(b"MONITOR\r\n")
            reader = connection.makefile("rb")
            assert reader.readline() == b"+OK\r\n"
            self.sockets.append((connection, reader))
        return self

    def __exit__(self, *exc):
        marker = f"end-of-monitor-{id(self)}"
        try:
            for port, (_, reader) in zip(self.ports, self.sockets, strict=True):
                with socket.create_connection(("127.0.0.1", port), timeout=10) as other:
                    other.sendall(f"ECHO {marker}\r\n".encode())
                    other.recv(100)
                while line := reader.readline().decode():
                    match = LINE.match(line.rstrip("\r\n"))
                    assert match, line[:200]
                    client, arguments = match.groups()
                    arguments = ARGUMENT.findall(arguments)
                    if arguments[:2] == ['"ECHO"', f'"{marker}"']:
                        break
                    if client != "lua":
                        self.commands.append(arguments)
        finally:
            for connection, reader in self.sockets:
                reader.close()
                connection.close()

    def longest(self):
        return max(self.commands, key=len)


@pytest.fixture
def private_buffer(request):
    """The buffer on a redis-server or a cluster of our own ([ports], client)."""
    if request.param == "standalone":
        server = request.getfixturevalue("private_redis")
        ports = [int(server.url.rsplit(":", 1)[1].split("/")[0])]
        url = server.url
    else:
        cluster = request.getfixturevalue("private_cluster")
        ports, url = cluster.ports, cluster.url
    with (
        override_settings(IMPRESSIONS_VIEWER_IMPRESSIONS_PER_HOUR=0, IMPRESSIONS_REDIS_TIMEOUT=5),
        buffer_at(url) as client,
    ):
        yield ports, client


@pytest.mark.parametrize("private_buffer", ["standalone", "cluster"], indirect=True)
def test_pending_counts_of_ten_thousand_objects(private_buffer):
    ports, client = private_buffer
    ids = list(range(1, OBJECTS + 1))
    yesterday = timezone.now() - timedelta(days=1)
    record_impressions("u:1", ids)  # today, 1 each
    record_impressions("u:2", ids[::3], now=yesterday)  # another day's field
    flush_module.take_snapshots(
        client, flush_module.new_flush_id(), range(conf.SHARDS)
    )  # all in a snapshot now
    record_impressions("u:3", ids[::2])  # pending again
    client.incrby(keys.lost_key(3), 7)
    expected = {i: 1 + (i % 3 == 1) + (i % 2 == 1) for i in ids}
    unknown = list(range(OBJECTS + 1, OBJECTS + 501))

    with Monitor(ports) as monitor:
        counts, lost = pending_status([*ids, *unknown])
    assert len(monitor.longest()) <= MAX_ARGS, monitor.longest()[0]
    assert any(command[0] == '"EVAL"' for command in monitor.commands)
    assert counts == {**expected, **dict.fromkeys(unknown, 0)}
    assert lost == 7
    # An id named twice counts once.
    assert pending_counts([5, 5, 6]) == {5: expected[5], 6: expected[6]}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("private_buffer", ["standalone", "cluster"], indirect=True)
def test_recording_and_flushing_ten_thousand_objects(private_buffer):
    """A page of 10,000 objects, and its flush: entries no database takes among them, moved
    aside in chunks."""
    ports, client = private_buffer
    ids = insert_posts(OBJECTS, make_user())
    bad = [f"x{index}:20260101" for index in range(2500)]
    with Monitor(ports) as monitor:
        assert record_impressions("u:1", ids).counted == OBJECTS
        for start in range(0, len(bad), 500):
            client.hset(
                keys.pending_group_keys(0)[-1], mapping=dict.fromkeys(bad[start : start + 500], 1)
            )
        report = flush_module.flush_pending()
    assert report.counters_set_aside == len(bad)
    assert Post.objects.filter(id__in=ids, impressions=1).count() == OBJECTS
    assert len(monitor.longest()) <= MAX_ARGS, monitor.longest()[0]
    assert len(monitor.commands) > 10


def test_the_largest_calls_stay_within_the_limit():
    """The parts' sizes against MAX_ARGS, with the most keys a call takes (a standalone Redis
    passes the schedule guard too): raising one past it fails here, not on Serverless."""
    script_keys, args = recorder.record_call(
        0, "a:" + "f" * 32, list(range(recorder.CALL_POSTS)), "", "20261206", 5, guard=True
    )
    largest = len(("EVALSHA", "sha", len(script_keys), *script_keys, *args))
    assert largest <= MAX_ARGS
    # What the AWS page and the recorder's comment say of it (the guard's two keys made it 1,031).
    said = re.search(r"([0-9,]+) arguments a command at most", AWS_PAGE.read_text())
    assert int(said[1].replace(",", "")) == largest
    assert (
        f"A part's command is {largest:,} arguments at most" in Path(recorder.__file__).read_text()
    )
    pending_fixed = 3 + 4 + len(keys.GROUPS) + 2  # EVAL script n, keys, the 2 prefixes
    assert pending_fixed + recorder.PENDING_IDS <= MAX_ARGS
    assert 3 + 2 + 1 + flush_module.SET_ASIDE_CHUNK <= MAX_ARGS  # EVAL script 2, keys, flush id


AWS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "operations" / "aws.md"


def documented_commands():
    """The commands docs/operations/aws.md says the buffer sends to Serverless: the first word of
    each `CODE` from "Recording, reading and flushing use" to the end of that entry."""
    text = AWS_PAGE.read_text()
    start = text.index("Recording, reading")
    entry = text[start : text.index("\n- ", start)]
    return set(re.findall(r"`([A-Z]+)(?: [^`]*)?`", entry))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("private_buffer", ["standalone", "cluster"], indirect=True)
def test_every_command_the_buffer_sends_is_one_the_aws_page_names(private_buffer, monkeypatch):
    """Recording (a new cookie-less viewer too), the status reads, a scheduled flush, one by hand
    and a full Redis's: each command a client sent is in the page's list of what Serverless is
    asked (a command missing there is one nobody checked Serverless takes)."""
    ports, _ = private_buffer
    ids = insert_posts(3, make_user())
    with override_settings(TASKS=DUMMY_TASKS), Monitor(ports) as monitor:
        every_buffer_path(ids, monkeypatch)
    sent = {command[0].strip('"').upper() for command in monitor.commands}
    assert "EVALSHA" in sent
    assert sent - documented_commands() == set()
