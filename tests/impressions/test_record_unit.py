"""The public API and the client's set-up, without services: what a site reaches, and how."""

import pytest

import impressions
from impressions import api
from impressions.redis_client import is_cluster_mode


def test_the_package_forwards_its_public_names_to_the_api():
    for name in impressions.__all__:
        assert getattr(impressions, name) is getattr(api, name)
    assert set(impressions.__all__) == set(api.__all__)


def test_the_package_hides_what_is_not_public():
    with pytest.raises(AttributeError, match="record_impressions"):
        impressions.record_impressions  # noqa: B018 (the attribute access is the test)


@pytest.mark.parametrize(
    "url",
    [
        "rediss://casusult-abc123.serverless.use1.cache.amazonaws.com:6379",
        "rediss://CASUSULT.clustercfg.euw1.cache.amazonaws.com.:6379",
    ],
)
def test_known_cluster_endpoints_pick_the_cluster_client_without_a_round_trip(url):
    # The hosts do not resolve here: any network use would raise instead of answering.
    assert is_cluster_mode(url, {"socket_connect_timeout": 0.05}) is True
