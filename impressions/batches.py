"""A flush id's snapshot lines, cut into the batches the flush applies one transaction each.

A line is `<object id>:<yyyymmdd>\\t<count>`: a snapshot field and its count, joined and decoded
in C, never parsed here. The lines of every shard read are sorted together as text (the order of
the field's characters, not numeric: the one every flush uses), so batches are ranges of it and
two flushes at once work through the objects in the same direction. A shard's mark, kept in the
ledger row, is the last field of it applied: the lines of that shard up to its mark are in the
database, the others not, whoever applied them and in whatever batches.

The order may start elsewhere than at the first line: at a flush id's `start` (a field, kept in
its ledger row), its lines from `start` on come first, then those before it. The parts of a
window's flush start at different places (part k of K at the k/K-th of its lines), so that
they do not work through the same objects at the same moments, each waiting for the others'
row locks: each reaches the objects the next part started at when that part has moved on.
Whoever applies a flush id's snapshots uses its ledger row's start, so marks keep one meaning.
"""

from bisect import bisect_left, bisect_right
from itertools import chain

from . import keys

# After the tab, a count is digits: a line of field F sorts below F + AFTER_FIELD.
AFTER_FIELD = "\t\uffff"
# The mark of a shard applied whole: after every line.
DONE = "\uffff"


def field_of(line):
    return line.partition("\t")[0]


class SnapshotLines:
    """The lines of one flush id's snapshots: {shard: {field: count}} as Redis returned them, or
    (shard, {field: count}) pairs as they come (each shard's lines are sorted on arrival, while
    the next is read: impressions/flush.py's read_snapshots)."""

    def __init__(self, snapshots, undated_day):
        pairs = snapshots.items() if isinstance(snapshots, dict) else snapshots
        self.by_shard = {shard: sorted(dated_lines(fields, undated_day)) for shard, fields in pairs}
        self.shards = sorted(self.by_shard)
        self._sorted = None  # every line, sorted (from the first)
        self._lines = None
        self._built_for = None  # the (marks, start) self._lines was filtered by
        self._position = 0

    def __len__(self):
        return sum(len(lines) for lines in self.by_shard.values())

    def sorted_lines(self):
        if self._sorted is None:
            # Sorted runs, one per shard: the sort merges them.
            self._sorted = list(chain.from_iterable(self.by_shard.values()))
            self._sorted.sort()
        return self._sorted

    def field_at(self, part, parts):
        """Where part `part` of `parts` starts: the field of the part/parts-th line ("" for
        the first line, or no line)."""
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
        end = min(start_at + size, len(lines))
        for stop in stops:
            at = before(lines, stop, start)
            if start_at < at < end:
                end = at
        while end < len(lines) and field_of(lines[end]) == field_of(lines[end - 1]):
            end += 1
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


def dated_lines(fields, undated_day):
    """The lines of one shard's snapshot ({field: count} in bytes, as Redis returned them), as
    text; a field without a day (written by a version before the history) gets `undated_day`'s.

    Joined and split in C: no Python step per field. Text sorts faster than bytes in CPython.
    """
    if not fields:
        return []
    joined = b"\n".join(map(b"\t".join, fields.items()))
    lines = joined.decode("latin-1").split("\n")
    if joined.count(b":") == len(lines):
        return lines
    day = ":" + keys.day_text(undated_day)
    return [
        line if ":" in field_of(line) else field_of(line) + day + line[line.index("\t") :]
        for line in lines
    ]


def copy_text(lines):
    """The COPY text of a batch's lines: `object id <tab> yyyymmdd <tab> count` rows."""
    return ("\n".join(lines).replace(":", "\t") + "\n").encode("latin-1")


def only_day(lines, text):
    """The day of every line of a batch (`text`: its copy_text), or None when it has several:
    counted in C, no Python step per line."""
    day = field_of(lines[0]).partition(":")[2]
    if len(day) == 8 and day.isdigit() and text.count(f"\t{day}\t".encode()) == len(lines):
        return keys.parse_day(day)
    return None


def parsed(lines):
    """[(object id, day, count)] of a batch's lines (the portable path)."""
    rows = []
    for line in lines:
        field, _, count = line.partition("\t")
        object_id, _, day = field.partition(":")
        rows.append((int(object_id), keys.parse_day(day), int(count)))
    return rows
