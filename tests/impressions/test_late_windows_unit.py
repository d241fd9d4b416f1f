"""The late-flush warning: one line a minute at most in a process, the ones in between counted."""

import logging

from impressions.flush import LateWindows


def test_late_flushes_in_a_row_log_one_line_a_minute_saying_how_many_more(caplog):
    """A worker back after an outage runs the queued windows one after another, each late."""
    now = [1000.0]
    late = LateWindows(clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="impressions.flush")
    for n in range(5):
        late.started(f"f{n}", 400.0 + n)
        now[0] += 10  # 40 s for the five
    now[0] += 30
    late.started("f5", 700.0)
    lines = [r.getMessage() for r in caplog.records if r.name == "impressions.flush"]
    assert len(lines) == 2
    assert lines[0].startswith("flush f0 started 400 s after its window was scheduled")
    assert "more such" not in lines[0]
    assert lines[1].startswith("flush f5 started 700 s after")
    assert lines[1].endswith("(4 more such flushes in this process since the last such line)")
