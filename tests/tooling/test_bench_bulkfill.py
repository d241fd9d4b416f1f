"""The benchmarks' bulk fill (benchmarks/bulkfill.py) on the real Redis: verify() fills a sample
through the RECORD script in pipelined calls and through record_impressions, and finds the two
buffers alike, as the window, parallel and midnight benchmarks need before they time anything."""

import pytest
from django.conf import settings

from benchmarks import bulkfill
from impressions.recorder import today
from tests.impressions.conftest import buffer_at


@pytest.mark.django_db
def test_the_bulk_fill_writes_the_buffer_record_impressions_writes():
    """The schedule's keys hold the time they were taken (the guard's value and, since the lost
    flush warning, the scheduled window's): the two fills take them at other moments. Before,
    verify() compared the scheduled window's time and failed every benchmark that fills."""
    with buffer_at(settings.IMPRESSIONS_REDIS_URL) as client:
        keys_compared = bulkfill.verify(client, {1: 2, 2: 1, 1001: 3}, today.text())
    assert keys_compared > 10
