"""The flush's batches of snapshot lines (impressions/batches.py), without services."""

import random
from datetime import date

from impressions import batches, keys, scripts
from impressions.batches import SnapshotLines

from .support import group_of


def snapshots():
    return {
        0: {b"12:20261118": b"1", b"5:20261118": b"2", b"300:20261119": b"1"},
        3: {b"12:20261118": b"4", b"7:20261118": b"1"},
    }


def all_batches(lines, size, marks=None):
    marks = dict(marks or {})
    found = []
    while True:
        batch, last, is_last = lines.next_batch(marks, size)
        if batch is None:
            return found
        found.append(batch)
        lines.advance(last)
        marks = dict.fromkeys(lines.shards, last)
        if is_last:
            return found


def test_batches_cover_every_line_once_in_one_order_a_field_never_split():
    lines = SnapshotLines(snapshots(), date(2026, 11, 20))
    found = all_batches(lines, 1)
    # The two shards' counters of post 12 on one day stay together; text order, not numeric.
    assert found == [
        ["12:20261118\t1", "12:20261118\t4"],
        ["300:20261119\t1"],
        ["5:20261118\t2"],
        ["7:20261118\t1"],
    ]
    assert sum(len(batch) for batch in all_batches(SnapshotLines(snapshots(), None), 100)) == 5


def test_marks_skip_what_is_applied_shard_by_shard():
    lines = SnapshotLines(snapshots(), date(2026, 11, 20))
    # Shard 0 applied through 300, shard 3 through 12 (two flushes applied parts).
    batch, last, is_last = lines.next_batch({0: "300:20261119", 3: "12:20261118"}, 10)
    assert batch == ["5:20261118\t2", "7:20261118\t1"]
    assert (last, is_last) == ("7:20261118", True)
    done = {0: "\uffff", 3: "\uffff"}
    assert lines.next_batch(done, 10) == (None, None, True)


def test_undated_fields_count_on_the_given_day_and_copy_text_is_tab_separated():
    lines = SnapshotLines({1: {b"9": b"3", b"9:20261120": b"1"}}, date(2026, 11, 20))
    batch, _, _ = lines.next_batch({}, 10)
    assert batch == ["9:20261120\t1", "9:20261120\t3"]
    assert batches.copy_text(batch) == b"9\t20261120\t1\n9\t20261120\t3\n"
    assert batches.parsed(batch) == [(9, date(2026, 11, 20), 1), (9, date(2026, 11, 20), 3)]


def all_batches_from(lines, size, start, marks=None, stops=()):
    """Batches in the order from `start`, ending at `stops`, with the marks the ledger would
    keep."""
    marks = dict(marks or {})
    found = []
    while True:
        batch, last, is_last = lines.next_batch(marks, size, start, stops)
        if batch is None:
            return found
        found.append(batch)
        lines.advance(last)
        marks = {shard: batches.later(marks.get(shard), last, start) for shard in lines.shards}
        if is_last:
            return found


def test_a_part_starts_at_its_share_of_the_lines_and_goes_round_every_line_once():
    lines = SnapshotLines(snapshots(), date(2026, 11, 20))
    assert lines.field_at(0, 2) == "" and lines.field_at(0, 1) == ""
    start = lines.field_at(1, 2)  # the 3rd of 5 lines (text order: 12, 12, 300, 5, 7)
    assert start == "300:20261119"
    found = all_batches_from(lines, 1, start)
    assert found == [
        ["300:20261119\t1"],
        ["5:20261118\t2"],
        ["7:20261118\t1"],
        ["12:20261118\t1", "12:20261118\t4"],
    ]
    assert batches.later("7:20261118", "12:20261118", start) == "12:20261118"
    assert batches.later("7:20261118", "5:20261118", start) == "7:20261118"
    assert batches.later(None, "5:20261118", start) == "5:20261118"
    assert lines.field_at(4, 4) == "" and SnapshotLines({}, None).field_at(1, 2) == ""


def test_marks_from_a_start_skip_what_is_applied_shard_by_shard():
    start = "300:20261119"
    lines = SnapshotLines(snapshots(), date(2026, 11, 20))
    # Shard 0 applied through 7 (300, 5 of it), shard 3 through 300 (none of it: 300 is
    # shard 0's): what is left, from the start on, is 7 and 12 of shard 3 and 12 of shard 0.
    batch, last, is_last = lines.next_batch({0: "5:20261118", 3: "300:20261119"}, 10, start)
    assert batch == ["7:20261118\t1", "12:20261118\t1", "12:20261118\t4"]
    assert (last, is_last) == ("12:20261118", True)
    # The same marks one batch at a time, each time with the marks the ledger moves.
    found = all_batches_from(lines, 1, start, {0: "5:20261118", 3: "300:20261119"})
    assert found == [["7:20261118\t1"], ["12:20261118\t1", "12:20261118\t4"]]
    # A mark before the start is at the end of the order: shard 0 is done, shard 3 untouched.
    batch, _, _ = SnapshotLines(snapshots(), None).next_batch({0: "12:20261118"}, 10, start)
    assert batch == ["7:20261118\t1", "12:20261118\t4"]
    done = {0: batches.DONE, 3: batches.DONE}
    assert lines.next_batch(done, 10, start) == (None, None, True)


def test_batches_end_where_the_other_parts_start():
    lines = SnapshotLines(snapshots(), date(2026, 11, 20))
    start, stops = "300:20261119", ["5:20261118", "12:20261118"]
    marks, found = {}, []
    while True:
        batch, last, is_last = lines.next_batch(marks, 10, start, stops)
        found.append(batch)
        lines.advance(last)
        marks = dict.fromkeys(lines.shards, last)
        if is_last:
            break
    # Cut before 5 and before 12 (the other parts' starts), whatever the batch size.
    assert found == [
        ["300:20261119\t1"],
        ["5:20261118\t2", "7:20261118\t1"],
        ["12:20261118\t1", "12:20261118\t4"],
    ]
    # From the first line: the same cuts.
    lines = SnapshotLines(snapshots(), date(2026, 11, 20))
    batch, _, _ = lines.next_batch({}, 10, "", ["300:20261119"])
    assert batch == ["12:20261118\t1", "12:20261118\t4"]


def test_a_batch_of_one_day_is_told_apart_from_one_of_several():
    one = ["12:20261118\t1", "20261118:20261118\t2", "5:20261118\t3"]
    assert batches.only_day(one, batches.copy_text(one)) == date(2026, 11, 18)
    mixed = [*one, "7:20261119\t1"]
    assert batches.only_day(mixed, batches.copy_text(mixed)) is None
    # A count or an id that reads like the day does not count as the day.
    tricky = ["12:20261119\t20261118", "20261118:20261119\t1"]
    assert batches.only_day(tricky, batches.copy_text(tricky)) == date(2026, 11, 19)
    more = [*tricky, "3:20261118\t1"]
    assert batches.only_day(more, batches.copy_text(more)) is None


def test_lines_read_as_they_come_are_the_lines_of_the_whole_snapshots():
    # The flush hands over (shard, fields) pairs as a thread reads them: each shard's lines are
    # sorted on arrival, and every order built on them is the one of the snapshots read whole.
    whole = SnapshotLines(snapshots(), date(2026, 11, 20))
    arriving = SnapshotLines(
        ((shard, None, "", fields) for shard, fields in snapshots().items()), date(2026, 11, 20)
    )
    assert arriving.sorted_lines() == whole.sorted_lines() == sorted(whole.sorted_lines())
    marks = {0: "12:20261118", 3: None}  # the shards applied unevenly: per-shard order
    assert all_batches(arriving, 2, marks) == all_batches(whole, 2, marks)
    assert all_batches(arriving, 2, marks)[0] == ["12:20261118\t4", "300:20261119\t1"]


def test_a_shard_as_the_record_script_writes_it_is_taken_whole_checked_or_not():
    fields = {b"12:20261118": b"1", b"-5:20261118": b"2", b"300:20261119": b"17"}
    expected = ["-5:20261118\t2", "12:20261118\t1", "300:20261119\t17"]
    for check in (False, True):
        lines, refused = batches.checked_lines(fields, date(2026, 11, 20), check)
        assert (sorted(lines), refused) == (expected, {})
    assert batches.checked_lines({}, None, check=True) == ([], {})


MALFORMED = {
    b"abc:20261118": b"3",  # not an object id
    b"12:20261399": b"1",  # no such day
    b"12:2026111": b"1",  # a day of 7 digits
    b"7:20261118": b"x",  # not a count
    b"8:20261118": b"-2",  # a negative count
    b"9:20261118": b"9223372036854775808",  # a count past bigint
    b"9223372036854775808:20261118": b"1",  # an id past bigint
    b"\xef\xbc\x91:20261118": b"1",  # a full-width digit (UTF-8)
}


def test_checked_entries_no_database_takes_are_refused_and_the_rest_kept():
    good = {b"12:20261118": b"1", b"9223372036854775807:20261118": b"2"}  # 19 digits, in range
    lines, refused = batches.checked_lines({**good, **MALFORMED}, None, check=True)
    assert refused == MALFORMED
    assert sorted(lines) == ["12:20261118\t1", "9223372036854775807:20261118\t2"]
    # Unchecked, every field with one colon: joined as they are (the database refuses the batch).
    assert len(batches.checked_lines({**good, **MALFORMED}, None)[0]) == len(good) + len(MALFORMED)


def test_fields_without_a_day_are_dated_and_every_entry_checked():
    fields = {b"44": b"4", b"12:20261118": b"1", b"5\n6:20261118": b"1", b"": b"2"}
    lines, refused = batches.checked_lines(fields, date(2026, 11, 20))
    assert sorted(lines) == ["12:20261118\t1", "44:20261120\t4"]
    assert refused == {b"5\n6:20261118": b"1", b"": b"2"}
    # Without a day to give them (none given), fields without a day are refused.
    assert batches.checked_lines({b"44": b"4"}, None) == ([], {b"44": b"4"})


def test_snapshot_lines_keep_what_each_shard_refused():
    snapshots = {0: {b"1:20261118": b"2", b"x:20261118": b"1"}, 3: {b"2:20261118": b"1"}}
    unchecked = SnapshotLines(snapshots, None)
    assert unchecked.set_aside == {}
    lines = SnapshotLines(snapshots, None, check=True)
    assert lines.set_aside == {(0, None): {b"x:20261118": b"1"}}
    assert lines.by_shard == {0: ["1:20261118\t2"], 3: ["2:20261118\t1"]}


# -- Snapshots in group hashes, applied as the groups arrive (StreamedLines) -----------------


def grouped(snapshots, undated_day=None, start=""):
    """`snapshots` ({shard: {field: count}}) as the record script spreads them over the group
    hashes: (the SnapshotLines of them read whole, the groups as impressions/flush.py's
    read_groups hands them over, a list that says how many of those were taken)."""
    hashes = [
        (
            shard,
            keys.GROUPS[group],
            {f: c for f, c in fields.items() if group_of(f.decode()) == group},
        )
        for group in range(len(keys.GROUPS))
        for shard, fields in snapshots.items()
    ]
    hashes = [(shard, group, fields) for shard, group, fields in hashes if fields]
    whole = SnapshotLines(
        [(shard, group, batches.group_prefix(group), fields) for shard, group, fields in hashes],
        undated_day,
        shards=snapshots,
    )
    taken = []

    def groups():
        order = [g for g in keys.GROUPS if batches.group_prefix(g) >= start]
        for group in order + [g for g in keys.GROUPS if g not in order]:
            chunks = []
            for shard, key, fields in hashes:
                if key == group:
                    prefix = batches.group_prefix(group)
                    lines, refused = batches.checked_lines(fields, undated_day, prefix=prefix)
                    chunks.append((shard, key, sorted(lines), refused))
            if chunks:
                taken.append(group)
                yield chunks

    return whole, groups(), taken


def group_sizes(whole):
    lines = whole.sorted_lines()
    return [
        (g, sum(line.startswith(batches.group_prefix(g)) for line in lines)) for g in keys.GROUPS
    ]


def many_snapshots(seed=7, shards=5, fields=300):
    rng = random.Random(seed)
    return {
        shard: {
            f"{rng.choice(['-', ''])}{rng.randrange(1, 5000)}:2026111{rng.randrange(8, 10)}".encode(): str(
                rng.randrange(1, 4)
            ).encode()
            for _ in range(fields)
        }
        for shard in range(0, 2 * shards, 2)
    }


def test_a_group_is_the_object_id_s_block_of_ids_as_the_record_script_picks_it():
    groups = [group_of(f"{n}:20261118") for n in (10, 999, 1000, 41_999, -7, 9_999_000)]
    assert groups == [0, 0, 1, 1, 9, 9]
    assert group_of("abc:20261118") == group_of("") == len(keys.GROUPS) - 1
    assert group_of("\uff11:1") == len(keys.GROUPS) - 1  # a digit, but not an ASCII one
    assert "{" + ", ".join(f"'{group}'" for group in keys.GROUPS) + "}" in scripts.GROUPS
    # The groups' lines sort in the order they are read: the ungrouped hash's first.
    prefixes = [batches.group_prefix(g) for g in (keys.UNGROUPED, *keys.GROUPS)]
    assert prefixes == sorted(prefixes)


def test_streamed_batches_are_the_batches_of_the_snapshots_read_whole():
    snapshots = many_snapshots()
    for size in (1, 2, 7, 100, 5000):
        whole, groups, _ = grouped(snapshots)
        streamed = batches.StreamedLines(groups, snapshots)
        assert all_batches(streamed, size) == all_batches(whole, size)


def test_streamed_batches_take_the_groups_they_need_and_the_last_says_so():
    snapshots = many_snapshots()
    _, groups, taken = grouped(snapshots)
    lines = batches.StreamedLines(groups, snapshots)
    batch, last, is_last = lines.next_batch({}, 10)
    assert len(batch) >= 10 and not is_last
    assert taken == ["0"]  # its group holds more than a batch: the next is not needed yet
    assert last.startswith("0|")
    marks = dict.fromkeys(lines.shards, last)
    while not is_last:
        lines.advance(last)
        batch, last, is_last = lines.next_batch(marks, 10)
        marks = dict.fromkeys(lines.shards, last)
    assert taken == list(keys.GROUPS[:10])  # every id here is a whole number
    assert lines.next_batch(marks, 10) == (None, None, True)


def test_a_batch_that_ends_where_the_groups_with_lines_end_is_the_last():
    snapshots = {0: {b"12:20261118": b"1", b"5:20261118": b"2"}, 1: {b"12:20261118": b"3"}}
    _, groups, _ = grouped(snapshots)
    lines = batches.StreamedLines(groups, snapshots)
    assert lines.next_batch({}, 2) == (
        ["0|12:20261118\t1", "0|12:20261118\t3"],
        "0|12:20261118",
        False,
    )
    assert lines.next_batch(dict.fromkeys([0, 1], "0|12:20261118"), 1) == (
        ["0|5:20261118\t2"],
        "0|5:20261118",
        True,
    )


def test_a_batch_that_its_last_field_takes_to_the_end_of_the_groups_is_the_last():
    # 3 lines read past a batch of 1: more than a batch left, no group read more; the field's
    # other lines then take the batch to the end of what was read, which is all there is.
    snapshots = {shard: {b"12:20261118": b"1"} for shard in range(3)}
    _, groups, _ = grouped(snapshots)
    lines = batches.StreamedLines(groups, snapshots)
    batch, last, is_last = lines.next_batch({}, 1)
    assert (len(batch), last, is_last) == (3, "0|12:20261118", True)


def test_marks_past_the_groups_read_and_other_orders_read_on():
    snapshots = many_snapshots()
    whole, _, _ = grouped(snapshots)
    ahead = whole.sorted_lines()[len(whole) * 3 // 4].partition("\t")[0]
    for marks, start, stops in [
        (dict.fromkeys(snapshots, ahead), "", ()),  # another flush applied this far
        ({0: ahead, 2: None}, "", ()),  # marks that differ
        ({}, whole.field_at(1, 3), ()),  # another part's start
        ({}, "", (whole.field_at(2, 3),)),
    ]:
        expected, groups, _ = grouped(snapshots)
        streamed = batches.StreamedLines(groups, snapshots)
        assert streamed.next_batch(marks, 50, start, stops) == expected.next_batch(
            marks, 50, start, stops
        )
    assert batches.StreamedLines(grouped(snapshots)[1], snapshots).field_at(2, 3) == (
        whole.field_at(2, 3)
    )


def test_streamed_lines_hand_the_refused_entries_over_as_they_arrive():
    snapshots = {0: {b"1:20261118": b"2", b"44": b"1"}, 1: {b"x:1": b"1", b"12:20261118": b"1"}}
    _, groups, _ = grouped(snapshots)
    found = []
    lines = batches.StreamedLines(groups, snapshots, lambda *refused: found.append(refused))
    # Refused by the database, not here: "x:1" (a field of the record script's shape).
    assert all_batches(lines, 10) == [["0|12:20261118\t1", "0|1:20261118\t2", "x|x:1\t1"]]
    assert found == [(0, "0", {b"44": b"1"})]  # dated by nobody: no undated day was given


def test_grouped_lines_copy_with_their_group_and_parse_without_it():
    lines = ["2|12:20261118\t3", "2|-52:20261119\t1"]
    assert batches.copy_text(lines) == b"2\t12\t20261118\t3\n2\t-52\t20261119\t1\n"
    assert batches.copy_columns(lines) == "g, object_id, day, n"
    assert batches.copy_columns(["12:20261118\t3"]) == "object_id, day, n"
    assert batches.parsed(lines) == [(12, date(2026, 11, 18), 3), (-52, date(2026, 11, 19), 1)]
    assert batches.only_day(lines, batches.copy_text(lines)) is None
    assert batches.only_day(lines[:1], batches.copy_text(lines[:1])) == date(2026, 11, 18)


def test_the_parts_of_a_window_start_at_groups_and_stream_from_there():
    snapshots = many_snapshots()
    whole, _, _ = grouped(snapshots)
    sizes = group_sizes(whole)
    for parts in (2, 3, 4):
        stops = [batches.group_start(sizes, other, parts) for other in range(parts)]
        assert stops[0] == "" and all(stop.endswith("|") for stop in stops[1:])
        for part in range(parts):
            start = stops[part]
            expected = all_batches_from(grouped(snapshots)[0], 20, start, stops=stops)
            _, groups, taken = grouped(snapshots, start=start)
            streamed = batches.StreamedLines(groups, snapshots, sizes=sizes, start=start)
            assert streamed.field_at(part, parts) == start
            first = streamed.next_batch({}, 20, start, stops)
            assert taken == [start[:1] or "0"]  # the part's own first group, nothing before it
            assert first[0] == expected[0]
            streamed.advance(first[1])
            marks = dict.fromkeys(streamed.shards, first[1])
            rest = all_batches_from(streamed, 20, start, marks, stops)
            assert [first[0], *rest] == expected
            # Each batch stays between two parts' starts.
            for batch in expected:
                places = {
                    sum(
                        batches.order_key(start)(line) >= batches.order_key(start)(stop)
                        for stop in stops
                        if stop
                    )
                    for line in batch
                }
                assert len(places) == 1


def test_a_start_the_groups_do_not_come_from_reads_every_line_first():
    snapshots = many_snapshots()
    whole, groups, taken = grouped(snapshots)
    start = whole.field_at(1, 3)  # a line's field: a start as a flush before the groups wrote it
    streamed = batches.StreamedLines(groups, snapshots, sizes=group_sizes(whole))
    assert streamed.next_batch({}, 30, start) == whole.next_batch({}, 30, start)
    assert len(taken) == 10  # every group (no id here is anything but a whole number)
