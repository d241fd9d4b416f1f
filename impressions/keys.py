"""Redis key names. Every key of one script call carries the same hash tag, so one cluster slot.

Viewers are spread over IMPRESSIONS_SHARDS tags `{<prefix>:<shard>}`: a request touches one slot
(one node), while the load spreads over the cluster's nodes.
"""

import zlib

from .conf import conf


def shard_of(viewer_key):
    return zlib.crc32(viewer_key.encode()) % conf.SHARDS


def tag(shard):
    return f"{{{conf.KEY_PREFIX}:{shard}}}"


def seen_key(shard, viewer_key):
    """Sorted set post id -> time it was last counted for this viewer (de-duplication)."""
    return f"{tag(shard)}:seen:{viewer_key}"


def pending_key(shard):
    """Hash post id -> impressions counted but not yet snapshotted by a flush."""
    return f"{tag(shard)}:pending"


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


def snapshots_key(shard):
    """Set of flush ids that have a snapshot in this shard (found again after a crash)."""
    return f"{tag(shard)}:snapshots"


def guard_key():
    """The schedule guard: set while a flush is scheduled and has not started."""
    return f"{{{conf.KEY_PREFIX}}}:flush-scheduled"


def salt_key(day):
    """The random salt of cookie-less viewer digests for one UTC day; expires when the day ends."""
    return f"{{{conf.KEY_PREFIX}}}:salt:{day}"
