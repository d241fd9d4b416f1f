"""Loopback ports: is something listening, and which free port a new server may take."""

import os
import random
import socket
import threading
from pathlib import Path

from .exceptions import ServiceUnavailable

# A cluster node also listens on its port + 10000 (the cluster bus), so that port must be free too.
CLUSTER_BUS_OFFSET = 10000
_handed_out = set()
_handing_out = threading.Lock()  # services may be started from several threads
# "K/M": this process takes only ports equal to K modulo M (M divides CLUSTER_BUS_OFFSET, so a
# cluster node's bus port is in the slice too). Processes that start servers side by side (the
# test workers of `make test`) each take a slice: between one's check that a port is free and its
# server's bind, another may check the same port, and its redis-server would fail to start while
# the other's answers in its place.
PORT_SLICE_VARIABLE = "DEVSERVICES_PORT_SLICE"


def is_listening(host, port, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ephemeral_port_range():
    """The kernel's range for outgoing connections' local ports (Linux; the IANA range elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49152, 65535


def _bindable(port):
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_slice(index, count):
    """The DEVSERVICES_PORT_SLICE of process `index` of `count` side by side: "index/M", M the
    smallest divisor of CLUSTER_BUS_OFFSET not below count."""
    modulus = next(m for m in range(count, CLUSTER_BUS_OFFSET + 1) if CLUSTER_BUS_OFFSET % m == 0)
    return f"{index}/{modulus}"


def _slice():
    value = os.environ.get(PORT_SLICE_VARIABLE)
    if not value:
        return 0, 1
    try:
        index, modulus = (int(part) for part in value.split("/"))
    except ValueError:
        index = modulus = -1
    if not (0 <= index < modulus and CLUSTER_BUS_OFFSET % modulus == 0):
        raise ServiceUnavailable(
            f"{PORT_SLICE_VARIABLE}={value!r} is not K/M with 0 <= K < M and M dividing"
            f" {CLUSTER_BUS_OFFSET}"
        )
    return index, modulus


def free_port(bus_offset=0):
    """A free loopback port for a server we are about to start (and port + bus_offset, if given).

    Picked outside the kernel's ephemeral range, where an outgoing connection cannot take it
    before our server binds it, and in this process's DEVSERVICES_PORT_SLICE; never handed out
    twice by one process.
    """
    index, modulus = _slice()
    low, high = ephemeral_port_range()
    spans = [(10000, low - 1 - bus_offset), (high + 1, 65535 - bus_offset)]
    spans = [(first, last) for first, last in spans if last - first >= 100]
    rng = random.SystemRandom()
    for _ in range(500):
        if not spans:
            break
        first, last = rng.choice(spans)
        port = rng.randint(first, last)
        port += (index - port) % modulus
        if port > last:
            continue
        wanted = [port, port + bus_offset] if bus_offset else [port]
        with _handing_out:
            if any(p in _handed_out for p in wanted) or not all(_bindable(p) for p in wanted):
                continue
            _handed_out.update(wanted)
        return port
    raise ServiceUnavailable(
        f"no free loopback port outside the ephemeral range {low}-{high} (bus offset {bus_offset})"
    )
