"""Redis key and field names. Every key of one script call carries the same hash tag (one slot).

Viewers are spread over IMPRESSIONS_SHARDS tags `{<prefix>:<shard>}`: a request touches one slot
(one node), while the load spreads over the cluster's nodes. A pending counter is the field
`<post id>:<yyyymmdd>` (the TIME_ZONE day it was recorded on) of one of its shard's pending
hashes: one per GROUPS, by the block of 1000 ids the post id is in, so that the flush applies a
group while it reads the next (impressions/batches.py).

Layouts: a snapshot's flush id says which layout wrote it. This build's ids are FLUSH_ID,
`<yyyymmdd>T<hhmmss>-<8 lowercase hex>` (flush.new_flush_id); its flush, its status reads and
ledger.close_orphans leave every other id alone (not read, not noted in the ledger, not taken out
of `snapshots`, not deleted; the ledger's pruning by age keeps the row of every id still in a
`snapshots` set, theirs too), so that a later build's worker may run beside this one (a rolling
deploy). The rule for a later build: one that changes what a snapshot is (its keys, fields,
counts, days, totals) or what a ledger row's marks mean gives its flush ids a prefix
`v<N>:` (`v2:20270101T000000-0123abcd`, N one more than the layout before), which no earlier
build since this one reads as its own; it keeps reading the earlier forms itself (their ledger
rows' marks included). A later build whose pending keys or totals change writes new key names
(which this build does not snapshot), never another format into these.
"""

import functools
import re
import zlib
from datetime import date

from .conf import conf


def shard_of(viewer_key):
    return zlib.crc32(viewer_key.encode()) % conf.SHARDS


def tag(shard):
    return f"{{{conf.KEY_PREFIX}:{shard}}}"


def record_keys(shard, viewer_key, hour, with_guard):
    """The keys of one RECORD call: seen, pending (ungrouped), armed, lost, pending days, totals,
    snapshots index, the viewer's impressions in clock hour `hour`, the pending group hashes
    (GROUPS of them)[, guard, scheduled window].

    Built from strings made once per (prefix, shard): the request path asks for them each call.
    """
    seen_prefix, shard_keys, rate, tail = _record_keys(conf.KEY_PREFIX, shard, with_guard)
    return [seen_prefix + viewer_key, *shard_keys, f"{rate}{viewer_key}:{hour}", *tail]


@functools.lru_cache(maxsize=4096)
def _record_keys(prefix, shard, with_guard):
    # `prefix` is conf.KEY_PREFIX at the call: it keys the cache; the functions below read it.
    shard_keys = (
        pending_key(shard),
        armed_key(shard),
        lost_key(shard),
        pending_days_key(shard),
        totals_key(shard),
        snapshots_key(shard),
    )
    guard = (guard_key(), scheduled_window_key()) if with_guard else ()
    tail = (*pending_group_keys(shard), *guard)
    return seen_key(shard, ""), shard_keys, rate_prefix(shard), tail


def seen_key(shard, viewer_key):
    """Sorted set post id -> time it was last counted for this viewer (de-duplication)."""
    return f"{tag(shard)}:seen:{viewer_key}"


def rate_prefix(shard):
    return f"{tag(shard)}:rate:"


def rate_key(shard, viewer_key, hour):
    """Impressions `viewer_key` counted in clock hour `hour` (Unix hours); expires after it."""
    return f"{rate_prefix(shard)}{viewer_key}:{hour}"


# The groups of a shard's pending counters, by the block of BLOCK ids the object id is in, modulo
# 10, and "x" for anything else (the record script computes the same). Any run of ids (the newest
# posts, which most impressions are of) spreads over all the groups, while neighbouring ids stay
# together: a batch's rows share their table and index pages, as in a plain id order.
GROUPS = (*"0123456789", "x")
BLOCK = 1000
# The prefix of a group's lines (impressions/batches.py), in the order the flush applies them:
# the hash of a version before the groups first ("/" sorts before the digits).
UNGROUPED = "/"


def pending_key(shard):
    """Hash `<post id>:<day>` -> impressions counted but not yet snapshotted by a flush, as a
    version before the groups wrote it (pending_group_keys hold them now): still read."""
    return f"{tag(shard)}:pending"


def pending_group_keys(shard):
    """The pending hashes of the GROUPS, in their order."""
    return _group_keys(pending_key(shard))


def _group_keys(key):
    return [f"{key}:{group}" for group in GROUPS]


def holding_keys(shard):
    """The keys of shard `shard` that hold counts to flush or a snapshot of them (the pending
    hashes, ungrouped and of the GROUPS, the pending days, the snapshots index), as bytes: the
    flush asks up to MAX_SHARDS shards of them at once (flush.shards_in_use). Built once per
    (prefix, shard): 14,112 keys made and encoded anew were half of that ask's 19 ms."""
    return _holding_keys(conf.KEY_PREFIX, shard)


@functools.lru_cache(maxsize=4096)
def _holding_keys(prefix, shard):
    # `prefix` is conf.KEY_PREFIX at the call: it keys the cache; the functions below read it.
    held = (pending_key(shard), *pending_group_keys(shard), pending_days_key(shard))
    return tuple(key.encode() for key in (*held, snapshots_key(shard)))


def pending_days_key(shard):
    """Set of the days (yyyymmdd) in the pending hash: pending counts of a post sum over them."""
    return f"{tag(shard)}:pending-days"


def armed_key(shard):
    """Set when this shard has pending counts that a scheduled flush will pick up."""
    return f"{tag(shard)}:armed"


def lost_key(shard):
    """Impressions that processes could not record (reported once Redis answers again)."""
    return f"{tag(shard)}:lost"


def totals_key(shard):
    """Hash of the shard's running totals: impressions `pending` and in `snapshots` (and each
    snapshot's own, `snapshot:<flush id>`); `exact` once they are (scripts.RECORD, SNAPSHOT)."""
    return f"{tag(shard)}:totals"


# The flush ids of this build's layout (see the module's docstring), in Python and as the Lua
# pattern the scripts check (scripts.FLUSH_ID): the two say the same of any id.
FLUSH_ID = re.compile(rb"[0-9]{8}T[0-9]{6}-[0-9a-f]{8}")
LUA_FLUSH_ID = "^" + "%d" * 8 + "T" + "%d" * 6 + "%-" + "[0-9a-f]" * 8 + "$"


def is_own_flush_id(flush_id):
    """Whether `flush_id` (str or bytes) is of this build's layout; any other belongs to another
    build, to be left alone."""
    if isinstance(flush_id, str):
        flush_id = flush_id.encode()
    return FLUSH_ID.fullmatch(flush_id) is not None


def snapshot_prefix(shard):
    return f"{tag(shard)}:snapshot:"


def snapshot_key(shard, flush_id):
    """Hash post id -> count, moved out of pending_key by flush `flush_id`; never expires."""
    return f"{snapshot_prefix(shard)}{flush_id}"


def snapshot_group_keys(shard, flush_id):
    """The snapshots of the pending group hashes, in the GROUPS' order."""
    return _group_keys(snapshot_key(shard, flush_id))


def snapshot_hashes(shard, flush_id):
    """[(hash key, group)] of a shard's snapshot, in the order the flush applies them: the
    ungrouped one (a version before the groups: UNGROUPED), then the GROUPS'."""
    return [
        (snapshot_key(shard, flush_id), UNGROUPED),
        *zip(snapshot_group_keys(shard, flush_id), GROUPS, strict=True),
    ]


def snapshot_days_prefix(shard):
    return f"{tag(shard)}:snapshot-days:"


def snapshot_days_key(shard, flush_id):
    """The pending days set, moved out with the pending hash into snapshot `flush_id`."""
    return f"{snapshot_days_prefix(shard)}{flush_id}"


def set_aside_key(shard):
    """Hash `<flush id> <field>` -> count: snapshot entries no database takes (not written by
    the record script), moved out of the flush's way; kept until deleted by hand."""
    return f"{tag(shard)}:set-aside"


def replicated_key(shard):
    """Set and deleted at once by each flush (scripts.REPLICATED): never there for long."""
    return f"{tag(shard)}:replicated"


def snapshots_key(shard):
    """Set of flush ids that have a snapshot in this shard (found again after a crash); the ids
    not of FLUSH_ID's form are another layout's, left alone."""
    return f"{tag(shard)}:snapshots"


def guard_key():
    """The schedule guard: set while a flush is scheduled and has not started."""
    return f"{{{conf.KEY_PREFIX}}}:flush-scheduled"


def flush_soon_key():
    """Set while a flush asked for by a refused record call (Redis full) has not finished
    (schedule.FullRedis): the other refusals ask for none."""
    return f"{{{conf.KEY_PREFIX}}}:flush-soon"


def flush_mark_key():
    """The newest flush id that took its snapshots on this buffer (flush.check_buffer_mark): a
    buffer whose mark is missing or older than the ledger's newest applied flush was emptied or
    went back in time."""
    return f"{{{conf.KEY_PREFIX}}}:flush-mark"


def window_key(window):
    """Set by the first part of a scheduled flush window to start (flush.window_command)."""
    return f"{{{conf.KEY_PREFIX}}}:flush-window:{window}"


def scheduled_window_key():
    """The schedule guard's value of the window last scheduled, until that window's flush starts
    (flush.window_command deletes it), for scripts.SCHEDULED_WINDOW_TTL: still there when the next
    window is scheduled, that flush never started in time (tasks.lost_window says so)."""
    return f"{{{conf.KEY_PREFIX}}}:flush-scheduled-window"


def window_mark():
    """What a scheduled window's token carries of IMPRESSIONS_KEY_PREFIX (tasks.window_token):
    8 hex digits, which no `@` or `~` holds."""
    return f"{zlib.crc32(conf.KEY_PREFIX.encode()):08x}"


def shards_read_key():
    """How many shards a flush reads (flush.shards_in_use): the most a flush has read or found
    since the key was set; it expires SHARDS_READ_TTL after, and the next flush asks them all."""
    return f"{{{conf.KEY_PREFIX}}}:shards-read"


def rollup_guard_key():
    """Set while a roll-up task is scheduled (tasks.schedule_rollup)."""
    return f"{{{conf.KEY_PREFIX}}}:rollup-scheduled"


def new_viewers_key(ip_digest, hour):
    """Hash of the new anonymous viewers one IP address (by digest) brought in clock hour `hour`:
    `#` = how many; a field per cookie-less digest. A slot of its own per address."""
    return f"{{{conf.KEY_PREFIX}:ip:{ip_digest}}}:new-viewers:{hour}"


def salt_key(day):
    """The random salt of cookie-less viewer digests for one UTC day; expires when the day ends."""
    return f"{{{conf.KEY_PREFIX}}}:salt:{day}"


# The names after each of a prefix's three tags: `{<prefix>}`, `{<prefix>:<shard>}` and
# `{<prefix>:ip:<digest>}`. One prefix's tag may be another's of another form (`{imp:3}` is the
# shard 3 tag of "imp" and the tag of "imp:3"; `{imp:ip:0}` is shard 0 of "imp:ip" and the form
# of an address's tag of "imp"), so a prefix's keys are told from its neighbours' by their names
# too: no name of one form starts as a name of another form does. A key added above takes a name
# of its form's list (tests/impressions/test_neighbours.py checks every function here).
PREFIX_NAMES = ("flush-", "shards-read", "rollup-scheduled", "salt:")
SHARD_NAMES = (
    *("seen:", "rate:", "pending", "armed", "lost", "totals", "snapshot", "set-aside"),
    "replicated",
)
IP_NAMES = ("new-viewers:",)


def own_keys(prefix):
    """A compiled (bytes) regex that matches a key of IMPRESSIONS_KEY_PREFIX `prefix` from its
    start, and no key of another prefix, whatever the two prefixes' shapes (`imp` and `imp:3`,
    `imp:`, `imp-2`, `imp:ip`)."""
    tag_of = re.escape(prefix)

    def names(choices):
        return "(?:" + "|".join(re.escape(name) for name in choices) + ")"

    return re.compile(
        rf"\{{{tag_of}\}}:{names(PREFIX_NAMES)}"
        rf"|\{{{tag_of}:[0-9]+\}}:{names(SHARD_NAMES)}"
        rf"|\{{{tag_of}:ip:[0-9a-f]+\}}:{names(IP_NAMES)}".encode()
    )


def day_text(day):
    """The day part of a pending field: 20261118 (sorts, and reads, as the date)."""
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def parse_day(text):
    """The date of a day part, as day_text() wrote it (bytes or str)."""
    return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
