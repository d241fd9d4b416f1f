"""moto in server mode: an SQS-protocol server over HTTP on a free loopback port."""

import subprocess
import sys
import urllib.request

from .exceptions import ServiceUnavailable
from .ports import free_port
from .processes import stop_process, wait_until


class MotoServerProcess:
    """`start()` it, reach it at `url` (with boto3's endpoint_url), `stop()` it."""

    def __init__(self):
        self.port = free_port()
        self.process = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def command(self):
        """The server's command line (a subclass may run moto its own way)."""
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def start(self):
        self.process = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(self._answers, 30, "moto server")
        return self

    def _answers(self):
        if self.process.poll() is not None:
            raise ServiceUnavailable(
                f"moto server exited with code {self.process.returncode}: is moto[server] installed?"
                " `make test` installs requirements-dev.txt, or pip install 'moto[server]'."
            )
        try:
            with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                return True
        except OSError:
            return False

    def stop(self):
        stop_process(self.process)
