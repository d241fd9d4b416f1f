"""A flush id's snapshot lines, cut into the batches the flush applies one transaction each.

A line is `<object id>:<yyyymmdd>\\t<count>`: a snapshot field and its count, joined and decoded
in C, never parsed here. The lines of every shard read are sorted together as text (the order of
the field's characters, not numeric: the one every flush uses), so batches are ranges of it and
two flushes at once work through the objects in the same direction. A shard's mark, kept in the
ledger row, is the last field of it applied: the lines of that shard up to its mark are in the
database, the others not, whoever applied them and in whatever batches.
"""

from bisect import bisect_right

from . import keys

# After the tab, a count is digits: a line of field F sorts below F + AFTER_FIELD.
AFTER_FIELD = "\t\uffff"


def field_of(line):
    return line.partition("\t")[0]


class SnapshotLines:
    """The lines of one flush id's snapshots, {shard: {field: count}} as Redis returned them."""

    def __init__(self, snapshots, undated_day):
        self.by_shard = {
            shard: dated_lines(fields, undated_day) for shard, fields in snapshots.items()
        }
        self.shards = sorted(self.by_shard)
        self._lines = None
        self._built_for = None  # the marks self._lines was filtered by
        self._position = 0

    def __len__(self):
        return sum(len(lines) for lines in self.by_shard.values())

    def next_batch(self, marks, size):
        """(lines, last field, is last) of the next `size` lines above `marks` ({shard: field,
        or None for none applied}), or (None, None, True) when none is left. All the lines of
        one field go in one batch: a mark covers a whole field."""
        marks = {shard: marks.get(shard) for shard in self.shards}
        if marks != self._built_for:
            self._build(marks)
        lines, start = self._lines, self._position
        if start >= len(lines):
            return None, None, True
        end = min(start + size, len(lines))
        while end < len(lines) and field_of(lines[end]) == field_of(lines[end - 1]):
            end += 1
        return lines[start:end], field_of(lines[end - 1]), end == len(lines)

    def advance(self, last_field):
        """After the batch ending at `last_field` committed: every shard's mark is that field."""
        self._built_for = dict.fromkeys(self.shards, last_field)
        self._position = bisect_right(self._lines, last_field + AFTER_FIELD, self._position)

    def _build(self, marks):
        """Sort the lines above the marks. One mark for all (the usual case): sort every line
        once and start after it; marks that differ (several flushes applied parts): per shard."""
        distinct = set(marks.values())
        if len(distinct) == 1:
            self._lines = sorted(line for lines in self.by_shard.values() for line in lines)
            mark = distinct.pop()
            self._position = 0 if mark is None else bisect_right(self._lines, mark + AFTER_FIELD)
        else:
            kept = []
            for shard, lines in self.by_shard.items():
                ordered = sorted(lines)
                mark = marks[shard]
                start = 0 if mark is None else bisect_right(ordered, mark + AFTER_FIELD)
                kept += ordered[start:]
            self._lines = sorted(kept)  # sorted runs: the sort merges them
            self._position = 0
        self._built_for = marks


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


def parsed(lines):
    """[(object id, day, count)] of a batch's lines (the portable path)."""
    rows = []
    for line in lines:
        field, _, count = line.partition("\t")
        object_id, _, day = field.partition(":")
        rows.append((int(object_id), keys.parse_day(day), int(count)))
    return rows
