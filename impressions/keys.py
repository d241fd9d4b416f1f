"""Redis key and field names. Every key of one script call carries the same hash tag (one slot).

Viewers are spread over IMPRESSIONS_SHARDS tags `{<prefix>:<shard>}`: a request touches one slot
(one node), while the load spreads over the cluster's nodes. A pending counter is the field
`<post id>:<yyyymmdd>` (the TIME_ZONE day it was recorded on) of its shard's pending hash.
"""

import zlib
from datetime import date

from .conf import conf


def shard_of(viewer_key):
    return zlib.crc32(viewer_key.encode()) % conf.SHARDS


def tag(shard):
    return f"{{{conf.KEY_PREFIX}:{shard}}}"


def seen_key(shard, viewer_key):
    """Sorted set post id -> time it was last counted for this viewer (de-duplication)."""
    return f"{tag(shard)}:seen:{viewer_key}"


def pending_key(shard):
    """Hash `<post id>:<day>` -> impressions counted but not yet snapshotted by a flush."""
    return f"{tag(shard)}:pending"


def pending_days_key(shard):
    """Set of the days (yyyymmdd) in the pending hash: pending counts of a post sum over them."""
    return f"{tag(shard)}:pending-days"


def armed_key(shard):
    """Set when this shard has pending counts that a scheduled flush will pick up."""
    return f"{tag(shard)}:armed"


def lost_key(shard):
    """Impressions that processes could not record (reported once Redis answers again)."""
    return f"{tag(shard)}:lost"


def snapshot_prefix(shard):
    return f"{tag(shard)}:snapshot:"


def snapshot_key(shard, flush_id):
    """Hash post id -> count, moved out of pending by flush `flush_id`; never expires."""
    return f"{snapshot_prefix(shard)}{flush_id}"


def snapshot_days_prefix(shard):
    return f"{tag(shard)}:snapshot-days:"


def snapshot_days_key(shard, flush_id):
    """The pending days set, moved out with the pending hash into snapshot `flush_id`."""
    return f"{snapshot_days_prefix(shard)}{flush_id}"


def snapshots_key(shard):
    """Set of flush ids that have a snapshot in this shard (found again after a crash)."""
    return f"{tag(shard)}:snapshots"


def guard_key():
    """The schedule guard: set while a flush is scheduled and has not started."""
    return f"{{{conf.KEY_PREFIX}}}:flush-scheduled"


def window_key(window):
    """Set by the first part of a scheduled flush window to start (flush.open_window)."""
    return f"{{{conf.KEY_PREFIX}}}:flush-window:{window}"


def rollup_guard_key():
    """Set while a roll-up task is scheduled (tasks.schedule_rollup)."""
    return f"{{{conf.KEY_PREFIX}}}:rollup-scheduled"


def salt_key(day):
    """The random salt of cookie-less viewer digests for one UTC day; expires when the day ends."""
    return f"{{{conf.KEY_PREFIX}}}:salt:{day}"


def day_text(day):
    """The day part of a pending field: 20261118 (sorts, and reads, as the date)."""
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def parse_day(text):
    """The date of a day part, as day_text() wrote it (bytes or str)."""
    return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
