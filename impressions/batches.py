"""A flush id's snapshot lines, cut into the batches the flush applies one transaction each.

A line is `<object id>:<yyyymmdd>\\t<count>`: a snapshot field and its count, joined and decoded
in C, never parsed here. The lines of every shard read are sorted together as text (the order of
the field's characters, not numeric: the one every flush uses), so batches are ranges of it and
two flushes at once work through the objects in the same direction. A shard's mark, kept in the
ledger row, is the last field of it applied: the lines of that shard up to its mark are in the
database, the others not, whoever applied them and in whatever batches.

The order may start elsewhere than at the first line: at a flush id's `start` (a field, kept in
its ledger row), its lines from `start` on come first, then those before it. The parts of a
window's flush start at different places (part k of K at the group holding the k/K-th of its
lines: StreamedLines.field_at), so that they do not work through the same objects at the same
moments, each waiting for the others' row locks: each reaches the objects the next part started
at when that part has moved on.
Whoever applies a flush id's snapshots uses its ledger row's start, so marks keep one meaning.
"""

import re
from bisect import bisect_left, bisect_right
from itertools import chain

from . import keys

# One snapshot entry, checked alone (SnapshotLines(check=True)): an object id and a count that a
# bigint holds, and a day (none: a field written by a version before the history).
FIELD = re.compile(r"(-?[0-9]{1,19})(?::([0-9]{8}))?")
COUNT = re.compile(r"[0-9]{1,19}")
BIGINT_MAX = 2**63 - 1

# After the tab, a count is digits: a line of field F sorts below F + AFTER_FIELD.
AFTER_FIELD = "\t\uffff"
# The mark of a shard applied whole: after every line.
DONE = "\uffff"


def in_bigint(number):
    return -BIGINT_MAX - 1 <= number <= BIGINT_MAX


def field_of(line):
    return line.partition("\t")[0]


class SnapshotLines:
    """The lines of one flush id's snapshots, read whole: {shard: {field: count}} as Redis
    returned them, or (shard, hash key, line prefix, {field: count}) as they come (a shard's
    snapshot is several hashes, each with its group's prefix: group_prefix; each one's lines
    are sorted on arrival, while the next is read: impressions/flush.py's read_snapshots)."""

    def __init__(self, snapshots, undated_day, check=False, shards=()):
        chunks = (
            [(shard, None, "", fields) for shard, fields in snapshots.items()]
            if isinstance(snapshots, dict)
            else snapshots
        )
        # Every shard of `shards`, with lines or not.
        self.by_shard = {shard: [] for shard in shards}
        # With `check` (after the database refused a batch): {(shard, hash key): {field: count}}
        # of the entries it would refuse, left out of the lines (checked_lines).
        self.set_aside = {}
        for shard, key, prefix, fields in chunks:
            lines, refused = checked_lines(fields, undated_day, check, prefix)
            lines.sort()  # on arrival, while the next hash is read
            self.by_shard.setdefault(shard, []).extend(lines)
            if refused:
                self.set_aside[shard, key] = refused
        for lines in self.by_shard.values():
            lines.sort()  # a shard's hashes: the sort merges their sorted runs
        self.shards = sorted(self.by_shard)
        self._sorted = None  # every line, sorted (from the first)
        self._lines = None
        self._built_for = None  # the (marks, start) self._lines was filtered by
        self._position = 0

    def __len__(self):
        return sum(len(lines) for lines in self.by_shard.values())

    def close(self):
        """Nothing to stop: read whole (as StreamedLines.close)."""

    def sorted_lines(self):
        if self._sorted is None:
            # Sorted runs, one per shard: the sort merges them.
            self._sorted = list(chain.from_iterable(self.by_shard.values()))
            self._sorted.sort()
        return self._sorted

    def field_at(self, part, parts):
        """Where part `part` of `parts` starts: the field of the part/parts-th line ("" for
        the first line, or no line)."""
        if part == 0:
            return ""
        lines = self.sorted_lines()
        index = len(lines) * part // parts
        return field_of(lines[index]) if 0 < index < len(lines) else ""

    def next_batch(self, marks, size, start="", stops=()):
        """(lines, last field, is last) of the next `size` lines above `marks` ({shard: field,
        or None for none applied}) in the order starting at `start`, or (None, None, True) when
        none is left. All the lines of one field go in one batch: a mark covers a whole field.
        A batch ends before any of the fields `stops` (where the other parts of a window start:
        a batch never runs into the posts another part is at)."""
        marks = {shard: marks.get(shard) for shard in self.shards}
        if (marks, start) != self._built_for:
            self._build(marks, start)
        lines, start_at = self._lines, self._position
        if start_at >= len(lines):
            return None, None, True
        end = batch_end(lines, start_at, size, start, stops)
        return lines[start_at:end], field_of(lines[end - 1]), end == len(lines)

    def advance(self, last_field):
        """After the batch ending at `last_field` committed: every shard's mark is that field."""
        _, start = self._built_for
        self._built_for = (dict.fromkeys(self.shards, last_field), start)
        self._position = after(self._lines, last_field, start, self._position)

    def _build(self, marks, start):
        """The lines above the marks, in the order from `start`. One mark for all (the usual
        case): every line sorted once; marks that differ (several flushes applied parts): per
        shard."""
        distinct = set(marks.values())
        if len(distinct) == 1:
            self._lines = rotated(self.sorted_lines(), start)
            self._position = after(self._lines, distinct.pop(), start)
        else:
            kept = []
            for shard, lines in self.by_shard.items():
                ordered = rotated(lines, start)
                kept += ordered[after(ordered, marks[shard], start) :]
            # Sorted runs: the sort merges them.
            self._lines = sorted(kept, key=order_key(start)) if start else sorted(kept)
            self._position = 0
        self._built_for = (marks, start)


class StreamedLines:
    """The lines of one flush id's snapshots kept in group hashes (keys.GROUPS), a group at a
    time as they are read: the batches of a group are applied while the next is read.

    `groups`: an iterator of the groups in their order, each a list of (shard, hash key, sorted
    lines, refused entries) with the lines of every shard of the flush id in that group. The
    groups follow the fields' text order, and each holds every line of its fields: the lines of
    the groups read so far are every line up to their last field. `on_refused(shard, key,
    entries)`: called with the entries no database takes (checked_lines) as a group arrives.

    `sizes`: [(group, lines)] of the groups, in the groups' order: the parts of a window start
    at a group (field_at). `start`: where the groups' order starts (a group's first line, or ""),
    as `groups` come: the batches in the order from `start`, above one mark for every shard,
    come as groups arrive; any other order (another start, marks that differ) needs every line
    first: then the rest is read and SnapshotLines takes over.
    """

    def __init__(self, groups, shards, on_refused=None, sizes=(), start=""):
        self.shards = sorted(shards)
        self._groups = groups
        self._on_refused = on_refused
        self._sizes = list(sizes)
        self._start = start
        self._chunks = []  # (shard, key, lines) of every group read
        self._ready = []  # the lines of the groups read, in the order from `start`
        self._read_all = False
        self._whole = None  # SnapshotLines, once an order needs every line

    def _read_group(self):
        group = next(self._groups, None)
        if group is None:
            self._read_all = True
            return
        arrived = []
        for shard, key, lines, refused in group:
            if refused and self._on_refused:
                self._on_refused(shard, key, refused)
            self._chunks.append((shard, key, lines))
            arrived += lines
        # Sorted runs: the sort merges them. A group's fields sort after the previous group's.
        arrived.sort()
        self._ready += arrived

    def _every_line(self):
        while not self._read_all:
            self._read_group()
        if self._whole is None:
            self._whole = SnapshotLines([], None)
            for shard in self.shards:
                lines = [line for at, _, part in self._chunks if at == shard for line in part]
                self._whole.by_shard[shard] = sorted(lines)
            self._whole.shards = self.shards
            self._whole._sorted = sorted(self._ready) if self._start else self._ready
        return self._whole

    def field_at(self, part, parts):
        """Where part `part` of `parts` starts: the first line of the group that holds the
        part/parts-th line (group_start), without reading them; when that is the first group
        (few groups hold lines), the part/parts-th line itself, as SnapshotLines says, once
        every line is read."""
        if part == 0:
            return ""
        return group_start(self._sizes, part, parts) or self._every_line().field_at(part, parts)

    def next_batch(self, marks, size, start="", stops=()):
        """As SnapshotLines.next_batch."""
        marks = {shard: marks.get(shard) for shard in self.shards}
        if self._whole is None and (start != self._start or len(set(marks.values())) > 1):
            self._every_line()
        if self._whole is not None:
            return self._whole.next_batch(marks, size, start, stops)
        mark = marks[self.shards[0]] if self.shards else DONE
        lines = self._ready
        at = after(lines, mark, start)
        # A batch of `size` lines with more after it (so it is not the last), or the rest: the
        # groups read are whole fields.
        while not self._read_all and len(lines) - at <= size:
            self._read_group()
            at = after(lines, mark, start)
        if at >= len(lines):
            return None, None, True
        # Another part's start is a group's first line: in the groups read, or after them.
        end = batch_end(lines, at, size, start, stops)
        # A batch that took every line read is the last only if no group with lines is left.
        while end == len(lines) and not self._read_all:
            self._read_group()
        return lines[at:end], field_of(lines[end - 1]), self._read_all and end == len(lines)

    def advance(self, last_field):
        """After a batch committed (next_batch finds the marks' place anew each time)."""
        if self._whole is not None:
            self._whole.advance(last_field)

    def close(self):
        """Stop reading (the groups' reader cancels what it has not started)."""
        close = getattr(self._groups, "close", None)
        if close:
            close()


def batch_end(lines, at, size, start, stops):
    """Where the batch of `lines` (in the order from `start`) from position `at` ends: after
    `size` lines, or before the first of `stops` on the way, then after the rest of its last
    field's lines (a mark covers a whole field)."""
    end = min(at + size, len(lines))
    for stop in stops:
        stop_at = before(lines, stop, start)
        if at < stop_at < end:
            end = stop_at
    while end < len(lines) and field_of(lines[end]) == field_of(lines[end - 1]):
        end += 1
    return end


def group_start(sizes, part, parts):
    """Where part `part` of `parts` starts in groups of `sizes` ([(group, lines)], in the
    groups' order): the first line of the group holding the part/parts-th line ("" for the
    first group)."""
    target = sum(count for _, count in sizes) * part // parts
    seen = 0
    for index, (group, count) in enumerate(sizes):
        seen += count
        if target < seen:
            return "" if index == 0 else group_prefix(group)
    return ""


def order_key(start):
    """The sort key of a line, or of a field, in the order starting at field `start`: the lines
    from `start` on, then those before it. (A line sorts as its field does against `start`: a
    tab sorts below every character of a field.)"""
    return lambda text: (text < start, text)


def rotated(lines, start):
    """Sorted `lines`, in the order starting at `start`."""
    if not start:
        return lines
    split = bisect_left(lines, start)
    return lines[split:] + lines[:split]


def before(lines, field, start):
    """The position in `lines` (in the order from `start`) of the first line of `field` or
    after it."""
    if not start:
        return bisect_left(lines, field)
    return bisect_left(lines, order_key(start)(field), key=order_key(start))


def after(lines, mark, start, low=0):
    """The position in `lines` (in the order from `start`) after the field `mark`: the first
    line not applied (0 for no mark, the end for DONE)."""
    if mark is None:
        return low
    if mark == DONE:
        return len(lines)
    if not start:
        return bisect_right(lines, mark + AFTER_FIELD, low)
    return bisect_right(lines, order_key(start)(mark + AFTER_FIELD), low, key=order_key(start))


def later(mark, field, start=""):
    """The later of a shard's mark (None: none) and `field`, in the order from `start`."""
    if mark is None or mark == "":
        return field
    return max(mark, field, key=order_key(start))


def group_prefix(group):
    """The prefix of the lines of a group's hash (keys.GROUPS, or keys.UNGROUPED): the lines of
    the groups sort in the order they are read, whatever their fields."""
    return f"{group}|"


def grouped_mark(mark):
    """A ledger row's mark (or start) in the groups' order: one that a version before the groups
    wrote (a field of the ungrouped hash, in plain text order) is that field in the ungrouped
    hash's group."""
    if not mark or mark == DONE or has_group(mark):
        return mark
    return group_prefix(keys.UNGROUPED) + mark


def checked_lines(fields, undated_day, check=False, prefix=""):
    """(lines, refused) of one snapshot hash ({field: count} in bytes, as Redis returned them):
    its lines as text, each after `prefix`, a field without a day (written by a version before
    the history) given `undated_day`'s.

    Unchecked, the lines of fields that all have a day are joined and split in C: no Python
    step per field (text sorts faster than bytes in CPython). Checked (`check`, or fields without
    a day), each entry is looked at: refused, {field: count}, holds those the database would
    refuse and the record script never writes (an object id or a count that is not a whole
    number a bigint holds, a negative count, a day that is no date).
    """
    if not fields:
        return [], {}
    if not check:
        joined = b"\n".join(map(b"\t".join, fields.items()))
        if prefix:
            start = prefix.encode()
            joined = start + joined.replace(b"\n", b"\n" + start)
        lines = joined.decode("latin-1").split("\n")
        if joined.count(b":") == len(lines):
            return lines, {}
    undated = ":" + keys.day_text(undated_day) if undated_day else None
    lines, refused = [], {}
    for field, count in fields.items():
        line = checked_line(field.decode("latin-1"), count.decode("latin-1"), undated)
        if line is None:
            refused[field] = count
        else:
            lines.append(prefix + line)
    return lines, refused


def is_day(text):
    try:
        keys.parse_day(text)
    except ValueError:
        return False
    return True


def checked_line(field, count, undated):
    """The line of one snapshot entry (text), or None when the database would refuse it."""
    match = FIELD.fullmatch(field)
    if match is None or COUNT.fullmatch(count) is None or not in_bigint(int(count)):
        return None
    object_id, day = match.groups()
    if not in_bigint(int(object_id)):
        return None
    if day is None:
        return None if undated is None else f"{field}{undated}\t{count}"
    return f"{field}\t{count}" if is_day(day) else None


def copy_text(lines):
    """The COPY text of a batch's lines: `[group <tab>] object id <tab> yyyymmdd <tab> count`
    rows (copy_columns)."""
    text = "\n".join(lines).replace(":", "\t")
    if is_grouped(lines):
        text = text.replace("|", "\t")
    return (text + "\n").encode("latin-1")


def is_grouped(lines):
    """Whether a batch's lines have their group's prefix (group_prefix)."""
    return has_group(lines[0])


def has_group(text):
    """Whether a line or a mark starts with its group's prefix (group_prefix: one character)."""
    return text[1:2] == "|"


def copy_columns(lines):
    """The columns copy_text's rows fill."""
    return "g, object_id, day, n" if is_grouped(lines) else "object_id, day, n"


def only_day(lines, text):
    """The day of every line of a batch (`text`: its copy_text), or None when it has several:
    counted in C, no Python step per line."""
    day = field_of(lines[0]).partition(":")[2]
    if len(day) == 8 and day.isdigit() and text.count(f"\t{day}\t".encode()) == len(lines):
        return keys.parse_day(day)
    return None


def parsed(lines):
    """[(object id, day, count)] of a batch's lines (the portable path); ValueError for a line
    PostgreSQL's COPY would refuse too."""
    rows = []
    for line in lines:
        field, _, count = line.partition("\t")
        if has_group(field):
            field = field[2:]
        object_id, _, day = field.partition(":")
        row = (int(object_id), keys.parse_day(day), int(count))
        if not (in_bigint(row[0]) and in_bigint(row[2])):
            raise ValueError(f"{line!r} holds a number past a bigint")
        rows.append(row)
    return rows
