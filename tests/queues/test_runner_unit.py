"""queues.runner's forked workers, without a queue server."""

import os
import select
import signal
import time

import pytest

from queues import runner


# pytest's process has threads of earlier tests; the children only sleep, write and _exit.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_worker_stops_when_its_parent_is_killed_outright():
    # runworker --concurrency N SIGKILLed (the OOM killer): its workers polled on as orphans,
    # and every restart added N more.
    gone_read, gone_write = os.pipe()  # EOF once the worker has exited
    ready_read, ready_write = os.pipe()
    parent = os.fork()
    if parent == 0:  # runworker's parent process
        code = 1
        try:
            os.close(gone_read)
            os.close(ready_read)
            parent_pid = os.getpid()
            if os.fork() == 0:  # one of its workers
                try:
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    runner.stop_with_parent(parent_pid)
                    os.write(ready_write, b"r")
                    time.sleep(10)
                finally:
                    os._exit(0)
            os.close(gone_write)
            os.close(ready_write)
            time.sleep(5)  # killed by the test before
        finally:
            os._exit(code)
    os.close(gone_write)
    os.close(ready_write)
    try:
        assert os.read(ready_read, 1) == b"r"  # the worker has asked to stop with its parent
        os.kill(parent, signal.SIGKILL)
        os.waitpid(parent, 0)
        assert select.select([gone_read], [], [], 5)[0], "the worker outlived its parent"
        assert os.read(gone_read, 1) == b""
    finally:
        os.close(gone_read)
        os.close(ready_read)
