"""What the app keeps about a viewer, and where (docs/operations/security.md#privacy)."""

import pytest
from django.test import override_settings

import devservices
from casusult.models import Post
from impressions import keys
from impressions.budgets import hour_of
from impressions.conf import conf
from impressions.flush import flush_pending
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


def test_a_logged_in_viewer_s_keys_are_the_two_the_docs_name_and_expire(standalone_buffer, client):
    # security.md tells an operator erasing an account which keys name it and when they expire.
    posts = make_posts(3)
    user = make_user("erased-later")
    client.force_login(user)
    hours = {hour_of()}
    assert client.get("/").status_code == 200
    hours.add(hour_of())  # the view may be in the next hour
    flush_pending()
    viewer = f"u:{user.pk}"
    shard = keys.shard_of(viewer)
    naming = {key.decode() for key in standalone_buffer.scan_iter(match=f"*{viewer}*")}
    rate = naming - {keys.seen_key(shard, viewer)}
    assert len(rate) == 1 and rate <= {keys.rate_key(shard, viewer, hour) for hour in hours}
    assert 0 < standalone_buffer.ttl(keys.seen_key(shard, viewer)) <= conf.DEDUP_WINDOW
    assert 0 < standalone_buffer.ttl(rate.pop()) <= 61 * 60
    assert Post.objects.filter(impressions=1).count() == len(posts)
