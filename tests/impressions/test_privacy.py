"""What the app keeps about a viewer, and where (docs/operations/security.md#privacy)."""

import pytest
from django.test import override_settings

import devservices
from tests.factories import make_posts, make_user

pytestmark = pytest.mark.django_db


def test_a_lost_view_logs_no_user_id(standalone_buffer, client, caplog):
    # Log lines outlive the buffer by months (an aggregator's retention): the loss line named
    # the viewer, "impressions lost: 20 for viewer u:<user id>", a logged-in user's id, and when.
    make_posts(3)
    user = make_user("erased-later")
    client.force_login(user)
    with override_settings(IMPRESSIONS_REDIS_URL=f"redis://127.0.0.1:{devservices.free_port()}/0"):
        assert client.get("/").status_code == 200
    lines = [r for r in caplog.records if r.name.startswith("impressions")]
    assert any("impressions lost: 3" in line.getMessage() for line in lines)
    assert not any(f"u:{user.pk}" in line.getMessage() for line in lines)
