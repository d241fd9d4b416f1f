"""The roll-up's report line, as rollup_impressions prints it and the task logs it."""

from datetime import date

from impressions.rollup import RollupReport


def test_the_report_names_the_days_rolled_up():
    report = RollupReport(days=[date(2026, 12, 5), date(2026, 12, 6)], rows_moved=7, duration=0.5)
    assert str(report) == (
        "roll-up: days 2026-12-05, 2026-12-06: 7 rows moved; 0 rows older than the kept history"
        " deleted; 0.500 s"
    )


def test_a_roll_up_with_no_ended_day_says_so():
    assert str(RollupReport(rows_pruned=3)) == (
        "roll-up: no day to roll up; 3 rows older than the kept history deleted; 0.000 s"
    )
