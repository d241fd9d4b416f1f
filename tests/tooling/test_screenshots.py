"""`make screenshots`' made-up history: filled as the flush leaves it, so the pages show it."""

from datetime import timedelta

import pytest

import impressions
from casusult.models import Post
from impressions import stats
from impressions.models import DailyImpressions, HistoryRollup, OpenDailyImpressions
from screenshots.__main__ import fill

pytestmark = pytest.mark.django_db


def test_the_screenshots_history_is_rolled_up_but_today_and_reads_back():
    post = fill()
    today = stats.today()
    assert HistoryRollup.objects.get(id=1).rolled_through == today - timedelta(days=1)
    assert set(OpenDailyImpressions.objects.values_list("day", flat=True)) == {today}
    assert not DailyImpressions.objects.filter(day__gte=today).exists()
    best_today = max(OpenDailyImpressions.objects.values_list("count", flat=True))
    assert impressions.top_posts(today, today, 1)[0][1] == best_today
    # The post chart's post: the most impressions over the last 30 days, today's open rows included.
    (top_id, count), *_ = impressions.top_posts(today - timedelta(days=29), today, 1)
    assert post.pk == top_id
    history = impressions.history([top_id], today - timedelta(days=29), today)[top_id]
    assert sum(history.values()) == count
    # Each post's total is what its history adds up to, as after real flushes.
    for shown in Post.objects.all():
        days = impressions.history([shown.pk], today - timedelta(days=400), today)[shown.pk]
        assert shown.impressions == sum(days.values())
