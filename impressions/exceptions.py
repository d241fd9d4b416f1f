"""Errors of the impressions app."""

from django.db import DatabaseError


class FlushError(Exception):
    """A flush could not finish; whatever it did not apply stays in Redis for the next flush."""


class RedisUnavailable(FlushError):
    """Redis did not answer (down, slow or refusing) while flushing."""


class DatabaseUnavailable(FlushError):
    """The database failed while applying a snapshot; the snapshot stays for the next flush."""


class RollupError(DatabaseError):
    """The database failed during the daily roll-up; the next roll-up goes on from there."""
