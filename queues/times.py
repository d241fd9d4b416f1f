"""Times under either USE_TZ: aware in messages and comparisons; in the project, as Django has them
(aware, or naive in TIME_ZONE when USE_TZ = False)."""

from datetime import UTC

from django.conf import settings
from django.utils import timezone


def aware(moment):
    """`moment` as an aware datetime in UTC: a naive one (USE_TZ = False) is TIME_ZONE's wall
    clock, its `fold` saying which of a repeated hour's two it is.

    In UTC, not TIME_ZONE: Python compares and subtracts two datetimes of the same tzinfo by
    their wall clocks, fold ignored, so in the hour a DST change repeats 01:03 EST (5 minutes
    after 01:58 EDT) came before it, and a task due then ran at once; 02:03 EST (65 minutes
    after) came 5 minutes after it.
    """
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_default_timezone())
    return moment.astimezone(UTC)


def project_time(moment):
    """An aware `moment` (or None) as the project's datetimes are: naive when USE_TZ = False."""
    if moment is None or settings.USE_TZ:
        return moment
    return timezone.make_naive(moment, timezone.get_default_timezone())
