"""PgBouncer: a private pooler on a free loopback port in front of a PostgreSQL, as production
puts one (or RDS Proxy) in front of Aurora/RDS."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .exceptions import ServiceUnavailable
from .ports import free_port, is_listening
from .processes import stop_process, wait_until

# PgBouncer refuses to run as root; as root (CI) it is started as this user instead.
UNPRIVILEGED_USER = "nobody"


def pgbouncer_binary():
    """The pgbouncer program's path (Debian puts it in /usr/sbin), or None when not installed."""
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")


class PgBouncerProcess:
    """`start()` it, connect to 127.0.0.1:`port` as `user` (any database of the server behind it,
    trusted as the server trusts it), `stop()` it. `pool_mode`: "transaction" (a server connection per transaction, as most
    production poolers run) or "session"; `max_client_conn`: the clients it takes at once (it
    refuses more)."""

    def __init__(
        self,
        server_host="127.0.0.1",
        server_port=5432,
        user="postgres",
        pool_mode="transaction",
        max_client_conn=100,
    ):
        self.server = (server_host, server_port)
        self.user = user
        self.pool_mode = pool_mode
        self.max_client_conn = max_client_conn
        self.port = free_port()
        self.workdir = None
        self.process = None

    def start(self):
        binary = pgbouncer_binary()
        if binary is None:
            raise ServiceUnavailable(
                "pgbouncer is not installed: install it (Debian: apt-get install pgbouncer;"
                " `make test` does, as root)."
            )
        self.workdir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        self.workdir.chmod(0o755)  # read by the unprivileged user too
        ini, users = self.workdir / "pgbouncer.ini", self.workdir / "users.txt"
        users.write_text(f'"{self.user}" ""\n')  # trust still asks for a known user
        host, port = self.server
        ini.write_text(
            "[databases]\n"
            f"* = host={host} port={port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {users}\nadmin_users = {self.user}\n"
            f"pool_mode = {self.pool_mode}\n"
            f"max_client_conn = {self.max_client_conn}\ndefault_pool_size = 20\n"
            # psycopg sends these; PgBouncer would refuse the connection otherwise.
            "ignore_startup_parameters = extra_float_digits,options\n"
        )
        ini.chmod(0o644)
        users.chmod(0o644)
        user = ["-u", UNPRIVILEGED_USER] if os.geteuid() == 0 else []
        self.process = subprocess.Popen(
            [binary, *user, str(ini)],
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "pgbouncer.log").open("w"),
            start_new_session=True,
        )
        wait_until(self._answers, 10, "pgbouncer")
        return self

    def _answers(self):
        if self.process.poll() is not None:
            log = (self.workdir / "pgbouncer.log").read_text().strip()
            raise ServiceUnavailable(f"pgbouncer exited with code {self.process.returncode}: {log}")
        return is_listening("127.0.0.1", self.port)

    def stop(self):
        """Stop it: its server connections close with it."""
        stop_process(self.process)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
