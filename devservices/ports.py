"""Loopback ports: is something listening, and which free port a new server may take."""

import random
import socket
import threading
from pathlib import Path

from .exceptions import ServiceUnavailable

# A cluster node also listens on its port + 10000 (the cluster bus), so that port must be free too.
CLUSTER_BUS_OFFSET = 10000
_handed_out = set()
_handing_out = threading.Lock()  # services may be started from several threads


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


def free_port(bus_offset=0):
    """A free loopback port for a server we are about to start (and port + bus_offset, if given).

    Picked outside the kernel's ephemeral range, where an outgoing connection cannot take it
    before our server binds it; never handed out twice by one process.
    """
    low, high = ephemeral_port_range()
    spans = [(10000, low - 1 - bus_offset), (high + 1, 65535 - bus_offset)]
    spans = [(first, last) for first, last in spans if last - first >= 100]
    rng = random.SystemRandom()
    for _ in range(500):
        if not spans:
            break
        first, last = rng.choice(spans)
        port = rng.randint(first, last)
        wanted = [port, port + bus_offset] if bus_offset else [port]
        with _handing_out:
            if any(p in _handed_out for p in wanted) or not all(_bindable(p) for p in wanted):
                continue
            _handed_out.update(wanted)
        return port
    raise ServiceUnavailable(
        f"no free loopback port outside the ephemeral range {low}-{high} (bus offset {bus_offset})"
    )
