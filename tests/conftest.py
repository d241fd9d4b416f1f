"""Shared fixtures: real services, started for the session when the environment does not name them."""

import os

import pytest

import devservices
from tests.processes import run_manage


@pytest.fixture(scope="session")
def redis_cluster_url():
    """A real 3-node Redis Cluster: TEST_REDIS_CLUSTER_URL, or one started for this session."""
    if url := os.environ.get("TEST_REDIS_CLUSTER_URL"):
        yield url
        return
    try:
        cluster = devservices.RedisClusterProcess().start()
    except devservices.ServiceUnavailable as error:
        pytest.fail(f"Cannot start a Redis Cluster for the tests: {error}")
    yield cluster.url
    cluster.stop()


@pytest.fixture(scope="session")
def sqs_endpoint_url():
    """An SQS-protocol server over HTTP: TEST_SQS_ENDPOINT_URL, or moto server started here."""
    if url := os.environ.get("TEST_SQS_ENDPOINT_URL"):
        yield url
        return
    try:
        server = devservices.MotoServerProcess().start()
    except devservices.ServiceUnavailable as error:
        pytest.fail(f"Cannot start the SQS-protocol server for the tests: {error}")
    yield server.url
    server.stop()


@pytest.fixture
def manage():
    return run_manage


def pytest_addoption(parser):
    parser.addoption(
        "--reverse",
        action="store_true",
        help="run the tests in reverse order (tests must not depend on each other's order)",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--reverse"):
        items.reverse()
