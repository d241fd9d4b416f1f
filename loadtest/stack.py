"""The real stack the load test runs against, on free loopback ports, torn down afterwards.

gunicorn with settings.prod (behind a pretend TLS proxy), `runworker` on SQS (moto in server
mode), a private redis-server as the impression buffer (which the load test stops and restarts),
and the caller's PostgreSQL database.
"""

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import devservices
from impressions.conf import MAX_HOURLY_BUDGET as UNLIMITED_BUDGET

PROJECT_DIR = Path(__file__).resolve().parent.parent


class Stack:
    """`prepare()`, then `start_servers()` (and `restart_servers_afresh()` for a second run), then
    `stop()`; `env` is what every server process gets."""

    def __init__(
        self,
        database_url,
        *,
        workers=2,
        threads=4,
        flush_delay=2,
        dedup_window=3600,
        redis_timeout=None,
    ):
        self.database_url = database_url
        self.workdir = Path(tempfile.mkdtemp(prefix="casusult-loadtest-"))
        self.redis_port = devservices.free_port()
        self.web_port = devservices.free_port()
        self.worker_health_port = devservices.free_port()
        self.workers, self.threads = workers, threads
        self.flush_delay, self.dedup_window = flush_delay, dedup_window
        self.redis_timeout = redis_timeout
        self.redis = self.moto = self.web = self.worker = None
        self.env = {}

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def redis_url(self):
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def prepare(self, *more_commands, say=print):
        """Redis, moto and its queue, the migrated database, the static files: all but the servers.

        The manage.py commands (and `more_commands`, each a list of arguments, after them) run in
        one process (loadtest.manage_many): one Django start-up instead of one per command.
        """
        self.start_redis()
        self.moto = devservices.MotoServerProcess().start()
        queue_name = "casusult-loadtest"
        self.env = self.server_env(queue_name)
        say(f"buffer: {self.redis_url}; SQS: {self.moto.url} queue {queue_name}")
        self.manage_many(
            ["migrate", "--noinput"],
            ["sqs_setup", "--queue-name", queue_name, "--visibility-timeout", "30"],
            ["collectstatic", "--noinput"],
            *more_commands,
        )
        return self

    def start_servers(self, say=print):
        """gunicorn and the worker; returns once gunicorn answers /healthz."""
        self.web = self.spawn(
            "web",
            [sys.executable, "-m", "gunicorn", "-c", "python:casusult.gunicorn_conf", "casusult.wsgi"],
        )  # fmt: skip
        self.worker = self.spawn(
            "worker",
            [
                sys.executable,
                "manage.py",
                "runworker",
                "--health-port",
                str(self.worker_health_port),
            ],
        )
        devservices.wait_until(self.web_answers, 60, "gunicorn")
        say(f"web: {self.base_url} (gunicorn, {self.workers} x {self.threads} threads)")
        return self

    def restart_servers_afresh(self, say=print):
        """The servers stopped, the buffer emptied, the servers started again with the setting's
        Redis timeout: a second run on this stack counts as a run of its own would (no viewer
        seen yet, no process's reload cache)."""
        self.terminate(self.worker, 30)
        self.terminate(self.web, 30)
        devservices.redis_command(self.redis_port, "flushdb")
        self.redis_timeout = None
        self.env.pop("IMPRESSIONS_REDIS_TIMEOUT", None)
        return self.start_servers(say)

    def server_env(self, queue_name):
        # Not the caller's Django or Prometheus settings: gunicorn_conf gives the web its own
        # metrics directory; the worker and the commands count in their own process.
        keep = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("DJANGO") and name != "PROMETHEUS_MULTIPROC_DIR"
        }
        return {
            **keep,
            "DJANGO_SETTINGS_MODULE": "settings.prod",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "QUEUE_BACKEND": "sqs",
            "SQS_QUEUE_NAME": queue_name,
            "SQS_WAIT_TIME_SECONDS": "1",
            "AWS_ENDPOINT_URL_SQS": self.moto.url,
            "AWS_ACCESS_KEY_ID": "loadtest",
            "AWS_SECRET_ACCESS_KEY": "loadtest",
            "AWS_DEFAULT_REGION": "us-east-1",
            "IMPRESSIONS_DEDUP_WINDOW": str(self.dedup_window),
            "IMPRESSIONS_FLUSH_DELAY": str(self.flush_delay),
            # Every client comes from 127.0.0.1, far beyond what one address brings: budgets so
            # high that they never refuse, checked all the same (the counts stay exact).
            "IMPRESSIONS_IP_NEW_VIEWERS_PER_HOUR": str(UNLIMITED_BUDGET),
            "IMPRESSIONS_VIEWER_IMPRESSIONS_PER_HOUR": str(UNLIMITED_BUDGET),
            "STATIC_ROOT": str(self.workdir / "static"),
            # The checks are about up or down, not speed: a loaded test machine may be slow.
            "READINESS_TIMEOUT": "3",
            **(
                {}
                if self.redis_timeout is None
                else {"IMPRESSIONS_REDIS_TIMEOUT": str(self.redis_timeout)}
            ),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            # gunicorn's own variable: casusult/gunicorn_conf.py's defaults, overridden.
            "GUNICORN_CMD_ARGS": (
                f"--bind 127.0.0.1:{self.web_port} --workers {self.workers}"
                f" --threads {self.threads}"
            ),
        }

    def start_redis(self):
        # Persistence on SHUTDOWN SAVE only: a restart keeps what was recorded before the outage,
        # like a managed Redis failing over; the outage is the only loss the test allows.
        self.redis = devservices.start_redis_server(
            self.redis_port, self.workdir / "redis", "--dbfilename", "buffer.rdb"
        )

    def stop_redis(self):
        """SHUTDOWN SAVE, then wait until the process is gone; returns when Redis is down."""
        devservices.redis_command(self.redis_port, "shutdown", "save")
        try:
            self.redis.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.redis.kill()
            self.redis.wait()

    def manage(self, *args, timeout=120):
        return self.run_python(["manage.py", *args], " ".join(args), timeout)

    def manage_many(self, *commands, timeout=300):
        """Each command (a list of manage.py arguments) in turn, in one process."""
        return self.run_python(
            ["-m", "loadtest.manage_many", *(json.dumps(command) for command in commands)],
            "; ".join(" ".join(command) for command in commands),
            timeout,
        )

    def run_python(self, args, what, timeout):
        result = subprocess.run(
            [sys.executable, *args],
            cwd=PROJECT_DIR,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"manage.py {what} failed ({result.returncode}): {result.stderr[-2000:]}"
            )
        return result

    def spawn(self, name, command):
        # Appended to: a second run's servers log after the first's.
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(
            command,
            cwd=PROJECT_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def web_answers(self):
        if self.web.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({self.web.returncode}):\n{self.log_tail('web')}")
        try:
            with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def scrape_metrics(self, worker=False):
        """/metrics of the web (all gunicorn processes) or of the worker (its health port)."""
        base = f"http://127.0.0.1:{self.worker_health_port}" if worker else self.base_url
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            return response.read().decode()

    def fetch(self, path, headers=None):
        """GET as the TLS-terminating balancer would forward it; (status, headers, body)."""
        request = urllib.request.Request(
            f"{self.base_url}{path}", headers={"X-Forwarded-Proto": "https", **(headers or {})}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()

    def static_file_check(self):
        """The admin's hashed stylesheet, as its login page links it: served and cached for good."""
        _, _, page = self.fetch("/admin/login/")
        link = re.search(rb'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', page)
        if link is None:
            return False, "no hashed stylesheet link on /admin/login/"
        path = link.group(1).decode()
        status, headers, _ = self.fetch(path, {"Accept-Encoding": "gzip"})
        detail = (
            f"{path}: {status}, Cache-Control {headers.get('Cache-Control')!r},"
            f" Content-Encoding {headers.get('Content-Encoding')!r}"
        )
        return status == 200 and "immutable" in headers.get("Cache-Control", ""), detail

    def stop_worker(self):
        """SIGTERM: the worker finishes the running task (a flush) and exits."""
        return self.terminate(self.worker, 30)

    def log_tail(self, name, lines=40):
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    @classmethod
    def terminate(cls, process, timeout):
        """SIGTERM to the process and its children, then wait (SIGKILL after `timeout` s)."""
        cls.send(process, signal.SIGTERM)
        return cls.reap(process, timeout)

    @staticmethod
    def send(process, sig):
        """`sig` to the process's group (each process here leads a session of its own)."""
        if process is not None and process.poll() is None:
            os.killpg(process.pid, sig)

    @staticmethod
    def reap(process, timeout):
        """Its exit code once it has exited, SIGKILL to its group after `timeout` s."""
        if process is None:
            return None
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            return process.wait()

    def stop(self, keep_files=False):
        """Every process told to stop at once, then waited for: their shutdowns overlap."""
        processes = [self.worker, self.web, self.redis, self.moto and self.moto.process]
        for process in processes:
            self.send(process, signal.SIGTERM)
        for process in processes:
            self.reap(process, 30)
        if not keep_files:
            shutil.rmtree(self.workdir, ignore_errors=True)


def metric_total(text, name):
    """Sum of every sample of metric `name` in a Prometheus text exposition; None if absent."""
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None
