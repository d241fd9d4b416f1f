"""A real Redis Cluster (3 primaries, replicas if asked) on free loopback ports, for the tests and
the benchmarks."""

import shutil
import subprocess
import tempfile
from pathlib import Path

from .exceptions import ServiceUnavailable
from .ports import CLUSTER_BUS_OFFSET, free_port
from .processes import stop_process, wait_until
from .redis_server import redis_command, start_redis_server
from .tls import make_tls_files, tls_url


class RedisClusterProcess:
    """`start()` the nodes and create the cluster; `url` reaches it; `stop()` removes it all.

    With `tls`, every node speaks TLS only, to clients and to each other (ElastiCache Serverless
    is such a cluster), and the nodes announce themselves by the name `localhost`, which `url`
    uses too, with the CA a client must trust in its ?ssl_ca_certs=.

    `server_args`: more redis-server options for every node (e.g. `--rename-command CONFIG ""`,
    which leaves the node answering as a managed server does).
    """

    def __init__(self, nodes=3, tls=False, replicas=0, server_args=()):
        # `replicas` per primary: `nodes` primaries, then their replicas (redis-cli's order).
        self.replicas = replicas
        self.server_args = tuple(server_args)
        self.ports = [
            free_port(bus_offset=CLUSTER_BUS_OFFSET) for _ in range(nodes * (1 + replicas))
        ]
        self.workdir = Path(tempfile.mkdtemp(prefix="casusult-cluster-"))
        self.processes = []
        try:
            self.tls = make_tls_files(self.workdir / "tls") if tls else None
        except BaseException:
            self.stop()  # no start() or stop() follows a failed construction: its files go now
            raise

    @property
    def url(self):
        if self.tls:
            return tls_url(self.ports[0], self.tls)
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self):
        try:
            return self._start()
        except ServiceUnavailable:
            self.stop()  # do not leave the nodes that did start running
            raise

    def _start(self):
        for port in self.ports:
            self.processes.append(self._start_node(port))
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        try:
            created = subprocess.run(
                [
                    "redis-cli",
                    *(self.tls.cli_args() if self.tls else []),
                    "--cluster",
                    "create",
                    *nodes,
                    "--cluster-replicas",
                    str(self.replicas),
                    "--cluster-yes",
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except subprocess.TimeoutExpired as error:  # the nodes never met: stopped by start()
            raise ServiceUnavailable(
                f"redis-cli --cluster create hung: {error.stdout!r:.500}"
            ) from None
        if created.returncode != 0:
            raise ServiceUnavailable(f"redis-cli --cluster create failed: {created.stdout[-500:]}")
        wait_until(self.is_ready, 30, "Redis Cluster")
        return self

    def _start_node(self, port):
        tls_options = [
            "--tls-cluster", "yes",
            "--tls-replication", "yes",
            "--cluster-announce-hostname", "localhost",
            "--cluster-preferred-endpoint-type", "hostname",
        ] if self.tls else []  # fmt: skip
        node_dir = self.workdir / str(port)
        return start_redis_server(
            port,
            node_dir,
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(node_dir / "nodes.conf"),
            "--cluster-node-timeout", "2000",
            "--repl-diskless-sync-delay", "0",
            *tls_options,
            *self.server_args,
            tls=self.tls,
        )  # fmt: skip

    def restart_node(self, port):
        """Start the node of `port` again (after its process died), from its nodes.conf: it
        rejoins the cluster, as a replica if its replica was promoted meanwhile. Its data is gone
        (no persistence): a replica takes it from its primary."""
        self.processes[self.ports.index(port)] = self._start_node(port)

    def is_ready(self):
        if not all(
            "cluster_state:ok" in redis_command(port, "cluster", "info", tls=self.tls)
            for port in self.ports
        ):
            return False
        if not self.replicas:
            return True
        # Every replica online (a WAIT counts it only once it has acknowledged: see the tests).
        replication = [
            redis_command(port, "info", "replication", tls=self.tls) for port in self.ports
        ]
        online = sum(text.count("state=online") for text in replication)
        return online == len(self.ports) // (1 + self.replicas) * self.replicas

    def stop(self):
        # All terminated first, then waited for: the nodes shut down in parallel.
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            stop_process(process)
        shutil.rmtree(self.workdir, ignore_errors=True)
