"""Redis over TLS only, for the tests: throw-away TLS files (a self-signed CA and a server
certificate it signed for localhost and 127.0.0.1, made with the openssl command line) and a
standalone redis-server serving them. The TLS cluster is RedisClusterProcess(tls=True)."""

import shutil
import ssl
import subprocess
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from .exceptions import ServiceUnavailable
from .ports import free_port
from .processes import stop_process
from .redis_server import start_redis_server

# The names a client may reach the server by: the certificate's subjectAltName. Cluster nodes
# also present it to each other on the cluster bus, as clients, which Redis verifies: clientAuth.
SERVER_NAMES = "DNS:localhost,IP:127.0.0.1"
SERVER_EXTENSIONS = f"""\
subjectAltName = {SERVER_NAMES}
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""
# The CA's own request: no default openssl.cnf, whose CA lacks the key usage strict checks want.
CA_CONFIG = """\
[req]
distinguished_name = subject
x509_extensions = ca
prompt = no
[subject]
CN = casusult test CA
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class TlsFiles:
    """The CA a client trusts (`ca`), and the server's certificate and key."""

    ca: Path
    certificate: Path
    key: Path

    def server_args(self):
        """redis-server's options to serve TLS with these files (clients need no certificate)."""
        return [
            "--tls-cert-file", str(self.certificate),
            "--tls-key-file", str(self.key),
            "--tls-ca-cert-file", str(self.ca),
            "--tls-auth-clients", "no",
        ]  # fmt: skip

    def cli_args(self):
        """redis-cli's options to talk TLS to that server."""
        return ["--tls", "--cacert", str(self.ca)]

    def client_context(self):
        """An ssl context that trusts the CA, checking the server's name as a client would."""
        return ssl.create_default_context(cafile=str(self.ca))


def make_tls_files(directory):
    """A new CA and a server certificate for localhost and 127.0.0.1 in `directory`."""
    if not shutil.which("openssl"):
        raise ServiceUnavailable("openssl is not installed: it makes the test TLS certificates.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    ca_key, ca_config, request, extensions = (
        directory / name for name in ("ca.key", "ca.cnf", "server.csr", "server.ext")
    )
    ca_config.write_text(CA_CONFIG)
    extensions.write_text(SERVER_EXTENSIONS)
    _openssl(
        "req", "-x509", "-config", ca_config, *EC_KEY, "-keyout", ca_key, "-out", files.ca,
        "-days", "7",
    )  # fmt: skip
    _openssl(
        "req", *EC_KEY, "-keyout", files.key, "-out", request, "-subj", "/CN=localhost",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", request, "-CA", files.ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", files.certificate, "-days", "7", "-extfile", extensions,
    )  # fmt: skip
    files.key.chmod(0o600)
    return files


def _openssl(*args):
    done = subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        raise ServiceUnavailable(f"openssl {args[0]} failed: {done.stderr[-500:]}")


def tls_url(port, tls, host="localhost"):
    """The rediss:// URL of a TLS Redis on a loopback port, as a user writes one: by name, with
    the CA to trust in redis-py's ?ssl_ca_certs= (database 0)."""
    return f"rediss://{host}:{port}/0?ssl_ca_certs={urllib.parse.quote(str(tls.ca), safe='/')}"


class RedisTlsServerProcess:
    """A standalone redis-server speaking TLS only, with its own CA: `start()` it, reach it at
    `url` (rediss://localhost:PORT/0?ssl_ca_certs=…), `stop()` it and its files."""

    def __init__(self):
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="casusult-tls-"))
        self.process = None
        try:
            self.tls = make_tls_files(self.workdir / "tls")
        except BaseException:
            self.stop()  # no start() or stop() follows a failed construction: its files go now
            raise

    @property
    def url(self):
        return tls_url(self.port, self.tls)

    def start(self):
        try:
            self.process = start_redis_server(self.port, self.workdir, tls=self.tls)
        except ServiceUnavailable:
            self.stop()
            raise
        return self

    def stop(self):
        stop_process(self.process)
        shutil.rmtree(self.workdir, ignore_errors=True)
