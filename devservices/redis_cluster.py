"""A real 3-master Redis Cluster on free loopback ports, for the tests and the benchmarks."""

import shutil
import subprocess
import tempfile
from pathlib import Path

from .exceptions import ServiceUnavailable
from .ports import CLUSTER_BUS_OFFSET, free_port
from .processes import stop_process, wait_until
from .redis_server import redis_command, start_redis_server


class RedisClusterProcess:
    """`start()` the nodes and create the cluster; `url` reaches it; `stop()` removes it all."""

    def __init__(self, nodes=3):
        self.ports = [free_port(bus_offset=CLUSTER_BUS_OFFSET) for _ in range(nodes)]
        self.workdir = Path(tempfile.mkdtemp(prefix="casusult-cluster-"))
        self.processes = []

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self):
        try:
            return self._start()
        except ServiceUnavailable:
            self.stop()  # do not leave the nodes that did start running
            raise

    def _start(self):
        for port in self.ports:
            node_dir = self.workdir / str(port)
            self.processes.append(
                start_redis_server(
                    port,
                    node_dir,
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(node_dir / "nodes.conf"),
                    "--cluster-node-timeout", "2000",
                )
            )  # fmt: skip
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        created = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *nodes,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if created.returncode != 0:
            raise ServiceUnavailable(f"redis-cli --cluster create failed: {created.stdout[-500:]}")
        wait_until(self.is_ready, 30, "Redis Cluster")
        return self

    def is_ready(self):
        return all(
            "cluster_state:ok" in redis_command(port, "cluster", "info") for port in self.ports
        )

    def stop(self):
        # All terminated first, then waited for: the nodes shut down in parallel.
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            stop_process(process)
        shutil.rmtree(self.workdir, ignore_errors=True)
