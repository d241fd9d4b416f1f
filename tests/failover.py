"""A standalone Redis failover behind a stable endpoint, as ElastiCache's primary endpoint, a DNS
name or a proxy does it: open connections stay on the old primary (now a replica that answers
every write READONLY), new ones reach the promoted replica."""

import contextlib
import shutil
import socket
import tempfile
import threading
import time

import redis

import devservices


class Forwarder:
    """A local port that forwards each new connection to the port `target` names at its connect:
    what a Redis endpoint's DNS name does in a failover (open connections stay where they are)."""

    def __init__(self, target):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(source, sink), daemon=True).start()

    def close(self):
        self.listener.close()


def pipe(source, sink):
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


class FailoverPair:
    """redis-servers of our own: a primary and its replica, behind a Forwarder (`url`, database
    `db`); fail_over() promotes the replica, demotes the primary and moves the endpoint."""

    def __init__(self, db=0):
        self.workdir = tempfile.mkdtemp(prefix="failover-redis-")
        self.ports = devservices.free_port(), devservices.free_port()
        self.processes = []
        try:
            for name, port in zip(("a", "b"), self.ports, strict=True):
                self.processes.append(
                    devservices.start_redis_server(
                        port, f"{self.workdir}/{name}", "--repl-diskless-sync-delay", "0"
                    )
                )
        except BaseException:
            self.stop()
            raise
        self.primary, self.replica = (redis.Redis(port=port, db=db) for port in self.ports)
        self.replica.replicaof("127.0.0.1", self.ports[0])
        self.endpoint = Forwarder(self.ports[0])
        self.url = f"redis://127.0.0.1:{self.endpoint.port}/{db}"

    def fail_over(self, timeout=20, move_endpoint=True):
        """Once the replica has every write of the primary: the replica is promoted, the primary
        becomes its replica, and the endpoint's new connections reach the promoted one (unless
        not `move_endpoint`: a DNS name that moves later; move_endpoint() then)."""
        offset = self.primary.info("replication")["master_repl_offset"]
        deadline = time.monotonic() + timeout
        while not self.in_sync(offset):
            assert time.monotonic() < deadline, "the replica did not catch up"
            time.sleep(0.02)
        self.replica.replicaof("NO", "ONE")
        self.primary.replicaof("127.0.0.1", self.ports[1])
        self.primary, self.replica = self.replica, self.primary
        if move_endpoint:
            self.move_endpoint()

    def move_endpoint(self):
        """The endpoint's new connections reach the present primary."""
        self.endpoint.target = self.primary.connection_pool.connection_kwargs["port"]

    def primary_on(self, db):
        """A client of the present primary's database `db`, past the endpoint."""
        return redis.Redis(port=self.primary.connection_pool.connection_kwargs["port"], db=db)

    def in_sync(self, offset):
        replication = self.replica.info("replication")
        return (
            replication.get("master_link_status") == "up"
            and replication.get("slave_repl_offset", -1) >= offset
        )

    def stop(self):
        with contextlib.suppress(AttributeError):
            self.endpoint.close()
        for process in self.processes:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)
