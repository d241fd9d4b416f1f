"""Steps of the walk-throughs behind a pool of connections (test_pooler: PgBouncer,
test_django_pool: Django's own): yesterday's impressions, parts of a flush at once from threads,
the roll-up of yesterday checked."""

import threading
from datetime import datetime, time, timedelta

from django.db import connections
from django.test import override_settings
from django.utils import timezone

from casusult.models import Post
from impressions import flush, rollup, stats

from .history_check import history_sums, rollup_mismatches


def yesterday_noon():
    day = stats.today() - timedelta(days=1)
    return timezone.make_aware(datetime.combine(day, time(12)), timezone.get_default_timezone())


def totals(ids):
    return dict(Post.objects.filter(id__in=ids).values_list("id", "impressions"))


def flush_parts_at_once(parts, copies=2):
    """Each part of a flush of `parts`, `copies` times (duplicate deliveries), each in a thread
    of its own that closes its connections at the end; returns (reports, errors)."""
    reports, errors = [], []

    def part(number):
        try:
            reports.append(flush.flush_pending(part=number, parts=parts))
        except Exception as error:  # the caller asserts there is none
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=part, args=(n % parts,)) for n in range(copies * parts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return reports, errors


def assert_rolls_up_yesterday(ids):
    """The roll-up moves yesterday, every row once (no flush holds it back)."""
    with override_settings(IMPRESSIONS_HISTORY_DAYS=0):
        report = rollup.roll_up()
    assert report.days == [stats.today() - timedelta(days=1)]
    assert rollup_mismatches() == []
    assert history_sums(ids) == totals(ids)
