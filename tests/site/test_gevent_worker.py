"""The site served by gunicorn's gevent worker with casusult/gunicorn_conf.py.

gevent is no dependency of the site: requirements-dev.txt installs it for these tests.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from django.db import connection

import devservices
from tests.impressions.support import database_url_for_subprocess
from tests.processes import PROJECT_DIR, manage_env


def get(url, timeout):
    """(status, seconds taken); status None when no answer came within `timeout`."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, time.monotonic() - started
    except urllib.error.HTTPError as error:
        return error.code, time.monotonic() - started
    except OSError:
        return None, time.monotonic() - started


@pytest.mark.django_db(transaction=True)
def test_a_preloaded_app_answers_readyz_and_pages(buffer):
    """gunicorn --preload imports the app in its master, before the gevent worker patches
    threading: the readiness probe's thread pool, made then, waited on an unpatched queue, and
    the first /readyz froze the whole worker (every request of the process) until gunicorn killed
    it for its missed heartbeats, and the next worker's first /readyz froze it again."""
    port = devservices.free_port()
    env = manage_env(
        {
            "DATABASE_URL": database_url_for_subprocess(connection),
            "PYTHONWARNINGS": "ignore",
            "GUNICORN_CMD_ARGS": (
                f"--bind 127.0.0.1:{port} --workers 1 --worker-class gevent --preload"
                " --timeout 10 --graceful-timeout 5"
            ),
        }
    )
    command = [sys.executable, "-m", "gunicorn", "-c", "python:casusult.gunicorn_conf"]
    # A session of its own: a worker frozen past the master's end is killed with it.
    server = subprocess.Popen(
        [*command, "casusult.wsgi"], cwd=PROJECT_DIR, env=env, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        devservices.wait_until(lambda: get(f"{base}/healthz", 1)[0] == 200, 30, "gunicorn")
        answers = []
        for _ in range(3):
            answers.append(get(f"{base}/readyz", 5))
            time.sleep(1.1)  # past the readiness answer's cache: each probes again
        answers.append(get(f"{base}/api/timeline/", 5))
        assert [status for status, _ in answers] == [200] * 4, answers
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        finally:
            with contextlib.suppress(ProcessLookupError):  # all gone already
                os.killpg(server.pid, signal.SIGKILL)
