"""Where the record load goes (the benchmark's standalone Redis db, a real 3-node cluster) and
what each server spent on it: INFO cpu and network deltas, summed over the nodes."""

import contextlib
import shutil
import tempfile
import urllib.parse
from dataclasses import dataclass

import redis

import devservices

from . import pinning
from .harness import ContenderFailed


@dataclass(frozen=True)
class ServerSample:
    """Counters of INFO, summed over every node: CPU seconds (user + sys) and bytes on the wire."""

    cpu: float
    net_in: int
    net_out: int

    def __sub__(self, other):
        return ServerSample(
            self.cpu - other.cpu, self.net_in - other.net_in, self.net_out - other.net_out
        )


def sample_of(client):
    """One server's counters now."""
    info = client.info("all")
    return ServerSample(
        float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
        int(info["total_net_input_bytes"]),
        int(info["total_net_output_bytes"]),
    )


def sum_samples(samples):
    total = ServerSample(0.0, 0, 0)
    for sample in samples:
        total = ServerSample(
            total.cpu + sample.cpu, total.net_in + sample.net_in, total.net_out + sample.net_out
        )
    return total


class Target:
    """One Redis deployment: `url` for the clients, a plain client per node for the bookkeeping.

    `pinned` (a pinning.Pinning): the servers were started for this target and pinned to its
    server CPUs; the clients are to run on its client CPUs. `server_pids`: those servers."""

    def __init__(self, name, url, cluster, node_urls, pinned=None, server_pids=()):
        self.name = name
        self.url = url
        self.cluster = cluster
        self.pinned = pinned
        self.server_pids = list(server_pids)
        # Set-up work (FLUSH, INFO, SCRIPT LOAD) may take a while on a busy machine.
        self.nodes = [redis.Redis.from_url(node, socket_timeout=60) for node in node_urls]

    @property
    def db(self):
        return self.nodes[0].connection_pool.connection_kwargs.get("db", 0)

    @property
    def first_node(self):
        kwargs = self.nodes[0].connection_pool.connection_kwargs
        return kwargs["host"], kwargs["port"]

    def sample(self):
        return sum_samples(sample_of(node) for node in self.nodes)

    def flush(self):
        """Empty the benchmark's data: its own db on the standalone server, every cluster node."""
        for node in self.nodes:
            node.flushall() if self.cluster else node.flushdb()

    def load_script(self, text):
        """SCRIPT LOAD on every node (redis-benchmark sends EVALSHA and never loads it)."""
        return {node.script_load(text) for node in self.nodes}.pop()

    def pending_total(self):
        """Impressions in every shard's pending hash: what the record calls have counted."""
        total = 0
        for node in self.nodes:
            # The ungrouped hashes (none written now) and the group hashes (`…:pending:<group>`).
            for pattern in ("*:pending", "*:pending:*"):
                for key in node.scan_iter(match=pattern, count=1000):
                    total += sum(int(value) for value in node.hvals(key))
        return total

    @property
    def client_cpus(self):
        return self.pinned.clients if self.pinned else None

    def check_pinned(self):
        """Each server's /proc line (every thread on the server CPUs), or ContenderFailed."""
        return [pinning.check(pid, self.pinned.servers, "redis-server") for pid in self.server_pids]

    def close(self):
        for node in self.nodes:
            node.close()


@contextlib.contextmanager
def standalone(url):
    """The benchmark's own db of a standalone Redis (FLUSHDB only ever empties that db)."""
    target = Target("standalone", url, cluster=False, node_urls=[url])
    try:
        yield target
    finally:
        target.close()


@contextlib.contextmanager
def standalone_server(pinned):
    """A redis-server of its own on a free loopback port, every thread pinned to
    `pinned.servers`, for the duration of the block (the shared Redis is never pinned)."""
    workdir = tempfile.mkdtemp(prefix="casusult-bench-redis-")
    port = devservices.free_port()
    try:
        process = devservices.start_redis_server(port, workdir)
    except devservices.ServiceUnavailable as error:
        shutil.rmtree(workdir, ignore_errors=True)
        raise ContenderFailed(f"could not start a redis-server: {error}") from None
    url = f"redis://127.0.0.1:{port}/0"
    try:
        pinning.pin(process.pid, pinned.servers)
        target = Target(
            "standalone, pinned", url, False, [url], pinned=pinned, server_pids=[process.pid]
        )
        try:
            yield target
        finally:
            target.close()
    finally:
        devservices.stop_process(process)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def cluster(pinned=None):
    """A real 3-master Redis Cluster on free loopback ports for the duration of the block;
    `pinned` (a pinning.Pinning): every thread of every node on its server CPUs."""
    process = devservices.RedisClusterProcess()
    try:
        process.start()
    except devservices.ServiceUnavailable as error:
        raise ContenderFailed(f"could not start the 3-node cluster: {error}") from None
    try:
        pids = [node.pid for node in process.processes]
        for pid in pids if pinned else ():
            pinning.pin(pid, pinned.servers)
        target = Target(
            "3-node cluster, pinned" if pinned else "3-node cluster",
            process.url,
            cluster=True,
            node_urls=[f"redis://127.0.0.1:{port}/0" for port in process.ports],
            pinned=pinned,
            server_pids=pids,
        )
        try:
            yield target
        finally:
            target.close()
    finally:
        process.stop()


def host_port_db(url):
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379, parts.path.strip("/") or "0"
