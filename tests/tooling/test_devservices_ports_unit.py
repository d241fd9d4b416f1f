"""devservices.free_port: ports for the servers the tests and the load test start; no services."""

import socket

import pytest

import devservices


def test_free_port_is_outside_the_ephemeral_range_and_never_repeats():
    low, high = devservices.ephemeral_port_range()
    ports = [devservices.free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    for port in ports:
        assert not low <= port <= high, port
        with socket.socket() as sock:  # still free: nothing but our own check touched it
            sock.bind(("127.0.0.1", port))


def test_free_port_with_a_bus_offset_leaves_the_bus_port_free_too():
    low, high = devservices.ephemeral_port_range()
    offset = devservices.CLUSTER_BUS_OFFSET
    for _ in range(20):
        port = devservices.free_port(bus_offset=offset)
        assert port + offset <= 65535
        assert not low <= port + offset <= high
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port + offset))


def test_free_port_skips_a_port_that_is_taken():
    taken = []
    try:
        for _ in range(50):  # hold many ports, so the picker must step around them
            sock = socket.socket()
            sock.bind(("127.0.0.1", devservices.free_port()))
            sock.listen()
            taken.append(sock)
        held = {sock.getsockname()[1] for sock in taken}
        assert devservices.free_port() not in held
    finally:
        for sock in taken:
            sock.close()


def test_free_port_keeps_to_its_slice_bus_port_included(monkeypatch):
    monkeypatch.setenv(devservices.PORT_SLICE_VARIABLE, "3/4")
    ports = [devservices.free_port(bus_offset=devservices.CLUSTER_BUS_OFFSET) for _ in range(50)]
    ports += [devservices.free_port() for _ in range(50)]
    assert {port % 4 for port in ports} == {3}
    assert {(port + devservices.CLUSTER_BUS_OFFSET) % 4 for port in ports} == {3}


def test_side_by_side_processes_get_slices_whose_bus_ports_stay_theirs():
    assert [devservices.port_slice(k, 2) for k in range(2)] == ["0/2", "1/2"]
    # 3 does not divide the bus offset (10000): a node's bus port would be in the next slice.
    assert [devservices.port_slice(k, 3) for k in range(3)] == ["0/4", "1/4", "2/4"]


@pytest.mark.parametrize("value", ["1", "2/2", "a/b", "1/3"])
def test_a_port_slice_that_is_not_one_is_named(monkeypatch, value):
    monkeypatch.setenv(devservices.PORT_SLICE_VARIABLE, value)
    with pytest.raises(devservices.ServiceUnavailable, match=f"DEVSERVICES_PORT_SLICE='{value}'"):
        devservices.free_port()
