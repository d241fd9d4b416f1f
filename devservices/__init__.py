"""Local services for `make run`, `make test`, the load test and the benchmarks; never production.

`python -m devservices ensure` checks PostgreSQL and Redis and starts what is missing;
`python -m devservices supervise CMD …` runs commands side by side until Ctrl-C.
"""

from .exceptions import ServiceUnavailable
from .moto_server import MotoServerProcess
from .pgbouncer import PgBouncerProcess, pgbouncer_binary
from .ports import (
    CLUSTER_BUS_OFFSET,
    PORT_SLICE_VARIABLE,
    ephemeral_port_range,
    free_port,
    is_listening,
    port_slice,
)
from .postgres import drop_database, ensure_database, ensure_postgres
from .processes import stop_process, supervise, wait_until
from .redis_cluster import RedisClusterProcess
from .redis_server import ensure_redis, redis_command, redis_ping, start_redis_server
from .tls import RedisTlsServerProcess

__all__ = [
    "CLUSTER_BUS_OFFSET",
    "PORT_SLICE_VARIABLE",
    "MotoServerProcess",
    "PgBouncerProcess",
    "RedisClusterProcess",
    "RedisTlsServerProcess",
    "ServiceUnavailable",
    "drop_database",
    "ensure_database",
    "ensure_postgres",
    "ensure_redis",
    "ephemeral_port_range",
    "free_port",
    "is_listening",
    "pgbouncer_binary",
    "port_slice",
    "redis_command",
    "redis_ping",
    "start_redis_server",
    "stop_process",
    "supervise",
    "wait_until",
]
