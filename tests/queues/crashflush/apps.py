"""A test-only app for worker subprocesses: with CRASH_FLUSH_AFTER_BATCHES=N in the environment,
the first flush in any of them to commit its N-th batch SIGKILLs its own process right there."""

import os
import signal

import redis
from django.apps import AppConfig
from django.conf import settings

CRASHED_KEY = "crashflush:crashed"


class CrashFlushConfig(AppConfig):
    name = "tests.queues.crashflush"
    label = "crashflush"

    def ready(self):
        after = int(os.environ.get("CRASH_FLUSH_AFTER_BATCHES") or 0)
        if after:
            from impressions import flush

            flush.checkpoint = crash_after(after)


def crash_after(batches):
    committed = 0

    def checkpoint(name):
        nonlocal committed
        if name != "after-batch":
            return
        committed += 1
        if committed == batches and crash_first():
            os.kill(os.getpid(), signal.SIGKILL)

    return checkpoint


def crash_first():
    """True for the first process to ask (a key in the test Redis), so one worker dies, once."""
    client = redis.Redis.from_url(settings.RQ_REDIS_URL)
    return bool(client.set(CRASHED_KEY, os.getpid(), nx=True, ex=600))
