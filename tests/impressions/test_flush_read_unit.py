"""The flush's read of its snapshots (impressions/flush.py's read_snapshots), without services."""

import threading

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from impressions import keys
from impressions.flush import read_snapshot, read_snapshots


class Client:
    """Answers HSCAN with one field a key, whole in one call; fails on the key of `failing`."""

    def __init__(self, flush_id, failing=None):
        self.flush_id, self.failing = flush_id, failing
        self.read = []

    def hscan(self, key, cursor=0, count=None):
        self.read.append(key)
        if key == keys.snapshot_key(self.failing, self.flush_id):
            raise RedisConnectionError("gone")
        return 0, {f"{len(self.read)}:20261203".encode(): b"1"}

    def hlen(self, key):
        raise AssertionError("a snapshot read in one call needs no HLEN")


class MovingScan:
    """A 6-field hash whose scan, the first `short` times, skips a field (a cursor carried to
    another server by a failover)."""

    def __init__(self, short):
        self.short, self.scans = short, 0
        self.hash = {f"{n}:20261203".encode(): str(n).encode() for n in range(6)}

    def hscan(self, key, cursor=0, count=None):
        items = list(self.hash.items())
        if cursor == 0:
            self.scans += 1
            return 3, dict(items[:3])
        skip = 1 if self.scans <= self.short else 0
        return 0, dict(items[3 + skip :])

    def hlen(self, key):
        return len(self.hash)


def reader_threads():
    return [t for t in threading.enumerate() if t.name.startswith("impressions-read")]


def hashes(flush_id, shards):
    return [(shard, keys.snapshot_key(shard, flush_id), keys.UNGROUPED) for shard in shards]


def test_snapshots_come_in_the_order_of_the_shards_asked_for():
    client = Client("f1")
    read = list(read_snapshots(client, hashes("f1", [4, 0, 9])))
    assert [(shard, key) for shard, key, _, _ in read] == [h[:2] for h in hashes("f1", [4, 0, 9])]
    assert {prefix for _, _, prefix, _ in read} == {"/|"}
    assert client.read == [keys.snapshot_key(shard, "f1") for shard in (4, 0, 9)]
    assert reader_threads() == []


def test_a_redis_error_in_the_reading_thread_reaches_the_flush_and_the_thread_ends():
    client = Client("f1", failing=2)
    with pytest.raises(RedisConnectionError, match="gone"):
        list(read_snapshots(client, hashes("f1", [0, 1, 2, 3])))
    assert reader_threads() == []


def test_a_reader_closed_half_way_ends_its_thread():
    client = Client("f1")
    read = read_snapshots(client, hashes("f1", range(50)))
    next(read)
    read.close()
    assert reader_threads() == []


def test_the_read_starts_before_the_flush_asks_for_its_first_snapshot():
    """The flush takes its lock holder's connection and does the ledger's upkeep before its first
    batch asks for lines: the read goes on meanwhile, not from that first ask on (it did, ~9 ms
    of round trips before a 10,000-post flush's read started)."""
    started = threading.Event()

    class Started(Client):
        def hscan(self, key, cursor=0, count=None):
            started.set()
            return super().hscan(key, cursor, count)

    read = read_snapshots(Started("f1"), hashes("f1", range(3)))
    assert started.wait(5)
    read.close()
    assert reader_threads() == []


def test_a_reader_closed_before_its_first_snapshot_ends_its_thread():
    client = Client("f1")
    read_snapshots(client, hashes("f1", range(50))).close()
    assert reader_threads() == []
    assert len(client.read) < 50


def test_a_scan_that_comes_short_of_the_snapshot_is_made_again():
    client = MovingScan(short=1)
    assert read_snapshot(client, "k") == client.hash
    assert client.scans == 2


def test_a_snapshot_that_keeps_coming_short_fails_the_flush_instead_of_applying_a_part():
    client = MovingScan(short=99)
    with pytest.raises(RedisError, match="3 reads fell short"):
        read_snapshot(client, "k")
    assert client.scans == 3
