"""How a demoted primary's answers are told apart (redis_endpoints.demoted_primary)."""

import pathlib
import pickle
import subprocess
import sys

import pytest
import redis
from redis.connection import Connection, ConnectionPool, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, ResponseError

from redis_endpoints import demoted_primary, reconnect_when_demoted


@pytest.mark.parametrize(
    "error",
    [
        # redis-py drops the READONLY code
        ReadOnlyError("You can't write against a read only replica."),
        # Redis 7 names the script
        ReadOnlyError(
            "You can't write against a read only replica. script: 75eb05…, on @user_script:31."
        ),
        # a pipeline's error, as redis-py words it
        ReadOnlyError(
            "Command # 1 (SADD rq:queues rq:queue:default) of pipeline caused error: You can't"
            " write against a read only replica."
        ),
        # Redis 6's script error holds the reply
        ResponseError(
            "Error running script (call to f_75eb05…): @user_script:31: -READONLY You can't write"
            " against a read only replica."
        ),
        ReadOnlyError("You can't write against a read only slave."),  # Redis before 5
        # an EXEC after a demotion that came while its MULTI was queued, Redis 6.0 (7.0 says
        # EXECABORT … READONLY You can't write against a read only replica.); 5 says "slave"
        ResponseError(
            "Transaction contains write commands but instance is now a read-only replica. EXEC"
            " aborted."
        ),
        ResponseError(
            "Transaction contains write commands but instance is now a read-only slave. EXEC"
            " aborted."
        ),
        ResponseError(
            "UNBLOCKED force unblock from blocking operation, instance state changed (master ->"
            " replica?)"
        ),
    ],
)
def test_a_demoted_primary_s_answers(error):
    assert demoted_primary(error)


@pytest.mark.parametrize(
    "error",
    [
        ResponseError("OOM command not allowed when used memory > 'maxmemory'."),
        ResponseError("LOADING Redis is loading the dataset in memory"),
        RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
        ResponseError("MOVED 3999 127.0.0.1:6381"),
    ],
)
def test_other_errors(error):
    assert not demoted_primary(error)


@pytest.mark.parametrize("base", [Connection, SSLConnection, UnixDomainSocketConnection])
def test_a_reconnecting_connection_class_survives_pickling(base):
    """A process started by spawn or forkserver gets its arguments by pickle (rq's WorkerPool
    hands its workers a pool's connection class, and starts them by spawn where there is no
    fork): there, the class is made again as it is unpickled. Before, it was pickled by a name
    that only the process that made it had."""
    client = reconnect_when_demoted(
        redis.Redis(connection_pool=ConnectionPool(connection_class=base))
    )
    connection_class = client.connection_pool.connection_class
    assert issubclass(connection_class, base)
    assert pickle.loads(pickle.dumps(connection_class)) is connection_class
    # A started process (spawn) has imported redis_endpoints, and made no such class yet.
    started = subprocess.run(
        [sys.executable, "-c", UNPICKLE, base.__name__],
        input=pickle.dumps(connection_class), capture_output=True, cwd=PROJECT_DIR, timeout=60,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr.decode()[-2000:]


PROJECT_DIR = pathlib.Path(__file__).resolve().parents[2]
UNPICKLE = """
import pickle, sys
import redis.connection, redis_endpoints
made = pickle.loads(sys.stdin.buffer.read())
assert issubclass(made, redis_endpoints.ReconnectsWhenDemoted), made
assert issubclass(made, getattr(redis.connection, sys.argv[1])), made
"""
