"""Live numbers for the dashboard: what is recorded in Redis and not yet flushed, added to the
history's numbers and marked, so a count moves within seconds instead of at the next flush.

Read cheaply: the site-wide total from buffer_status() (one short reply per shard), per-object
counts only for the objects a page shows (pending_counts). Pending impressions are counted on
today: a flush runs minutes after them, so nearly all are today's.
"""

from dataclasses import dataclass

from django.utils.formats import number_format
from django.utils.translation import gettext

from redis_endpoints import redacting_logger

from .recorder import buffer_status, pending_counts

logger = redacting_logger(__name__)

# The dashboard reads the buffer once per page: more patience than a timeline request's 50 ms.
BUFFER_TIMEOUT = 0.5


@dataclass(frozen=True)
class Buffer:
    """The buffer as one page read it: `status` (a BufferStatus), or the `error` that stopped it."""

    status: object = None
    error: str | None = None

    @property
    def pending(self):
        """Impressions not in the database yet: pending, and in snapshots a flush has not applied."""
        if self.status is None:
            return 0
        return self.status.pending_impressions + self.status.in_snapshots


def read_buffer():
    try:
        return Buffer(status=buffer_status(BUFFER_TIMEOUT))
    except Exception as error:
        logger.info("dashboard: the impression buffer did not answer (%s)", type(error).__name__)
        return Buffer(error=type(error).__name__)


@dataclass(frozen=True)
class RangeTotal:
    """A range's impressions against the period of the same length before it."""

    total: int  # flushed and, when the range holds today, pending
    pending: int
    previous: int
    previous_label: str

    @property
    def change(self):
        """The change in percent, rounded; None when the period before had none."""
        if not self.previous:
            return None
        return round((self.total - self.previous) * 100 / self.previous)

    total_text = property(lambda self: number_format(self.total))
    pending_text = property(lambda self: number_format(self.pending))
    previous_text = property(lambda self: number_format(self.previous))

    @property
    def change_text(self):
        """+12% / -8% / no change."""
        change = self.change
        if change is None:
            return ""
        if change == 0:
            return gettext("no change")
        sign = "+" if change > 0 else "-"
        return gettext("%(sign)s%(percent)s%%") % {
            "sign": sign,
            "percent": number_format(abs(change)),
        }

    @property
    def direction(self):
        if self.change is None or self.change == 0:
            return "flat" if self.change == 0 else "new"
        return "up" if self.change > 0 else "down"


def range_total(flushed, previous, date_range, today, buffer):
    """The RangeTotal of a range with `flushed` impressions, `previous` in the period before."""
    pending = buffer.pending if date_range.start <= today <= date_range.end else 0
    span = date_range.previous()
    return RangeTotal(flushed + pending, pending, previous, span.span_text())


def pending_by_object(object_ids):
    """{id: pending count} of these objects; {} when Redis does not answer (shown as flushed only)."""
    if not object_ids:
        return {}
    try:
        return pending_counts(sorted(object_ids))
    except Exception as error:
        logger.info("dashboard: pending counts unavailable (%s)", type(error).__name__)
        return {}


def with_pending(rows, pending):
    """[(object_id, count + pending, pending)], re-ranked by the live count, ties by id."""
    live = [(object_id, count + pending.get(object_id, 0), pending.get(object_id, 0))
            for object_id, count in rows]  # fmt: skip
    return sorted(live, key=lambda row: (-row[1], row[0]))
