"""Times under either USE_TZ: aware in messages and comparisons; in the project, as Django has them
(aware, or naive in TIME_ZONE when USE_TZ = False)."""

from django.conf import settings
from django.utils import timezone


def aware(moment):
    """`moment` as an aware datetime: a naive one (USE_TZ = False) is TIME_ZONE's wall clock."""
    if timezone.is_naive(moment):
        return timezone.make_aware(moment, timezone.get_default_timezone())
    return moment


def project_time(moment):
    """An aware `moment` (or None) as the project's datetimes are: naive when USE_TZ = False."""
    if moment is None or settings.USE_TZ:
        return moment
    return timezone.make_naive(moment, timezone.get_default_timezone())
