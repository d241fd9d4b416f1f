"""The flush's raw limit: the best SQL alone, sent by psql (C) and timed by its \\timing."""

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .harness import ContenderFailed, Measurement

TIME_LINE = re.compile(r"^Time: ([0-9.]+) ms", re.MULTILINE)
# The totals alone: what "ours without the history" does.
COPY_UPDATE = """BEGIN;
CREATE TEMP TABLE bench_pending (id bigint PRIMARY KEY, c bigint) ON COMMIT DROP;
\\copy bench_pending FROM '{csv}' WITH (FORMAT csv)
ANALYZE bench_pending;
UPDATE casusult_post AS p SET impressions = p.impressions + b.c FROM bench_pending AS b
 WHERE p.id = b.id;
COMMIT;
"""
# The same work as ours, from the same rows ours reads: one (post, day, count) per counter of a
# Redis shard, so a post seen in several shards has several rows, summed here as ours sums them.
# The totals, the open day's history rows (sorted, so the index grows in order: the fastest way
# found), the site-wide day rows; one transaction.
SAME_WORK = """BEGIN;
CREATE TEMP TABLE bench_pending (object_id bigint, day date, n bigint) ON COMMIT DROP;
\\copy bench_pending FROM '{csv}' WITH (FORMAT text)
ANALYZE bench_pending;
UPDATE casusult_post AS p SET impressions = p.impressions + t.n
 FROM (SELECT object_id, sum(n) AS n FROM bench_pending GROUP BY object_id) AS t
 WHERE p.id = t.object_id;
INSERT INTO impressions_daily_open AS h (object_id, day, count)
 SELECT object_id, day, sum(n) FROM bench_pending GROUP BY object_id, day ORDER BY object_id, day
 ON CONFLICT (object_id, day) DO UPDATE SET count = h.count + EXCLUDED.count;
INSERT INTO impressions_site_daily AS h (day, count)
 SELECT day, sum(n) FROM bench_pending GROUP BY day ORDER BY day
 ON CONFLICT (day) DO UPDATE SET count = h.count + EXCLUDED.count;
COMMIT;
"""


def psql_times(database_url, script_path):
    """Run a psql script; the \\timing of each statement in seconds (nothing else is timed)."""
    if not shutil.which("psql"):
        raise ContenderFailed("psql is not on PATH (Debian: apt-get install postgresql-client)")
    completed = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", database_url, "-f", str(script_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise ContenderFailed(f"psql failed: {completed.stderr.strip()[:300]}")
    return [float(ms) / 1000 for ms in TIME_LINE.findall(completed.stdout)]


class RawSqlScripts:
    """SQL files for one pending workload, written once (untimed) and replayed each round.

    `pending_counts`: {post id: count}; `shard_rows`: the [(post id, day, count)] counters ours
    reads from Redis for the same workload (see FlushWorkload.shard_rows).
    """

    def __init__(self, database_url, pending_counts, shard_rows):
        self.database_url = database_url
        self.rows = len(pending_counts)
        self.directory = Path(tempfile.mkdtemp(prefix="casusult-bench-sql-"))
        totals_csv = self.directory / "pending.csv"
        totals_csv.write_text(
            "".join(f"{post_id},{count}\n" for post_id, count in pending_counts.items())
        )
        self.copy_script = self.directory / "copy.sql"
        self.copy_script.write_text("\\timing on\n" + COPY_UPDATE.format(csv=totals_csv))
        rows_file = self.directory / "rows.tsv"
        rows_file.write_text(
            "".join(f"{post_id}\t{day.isoformat()}\t{n}\n" for post_id, day, n in shard_rows)
        )
        self.same_work_script = self.directory / "same-work.sql"
        self.same_work_script.write_text("\\timing on\n" + SAME_WORK.format(csv=rows_file))

    def run_copy(self):
        """COPY into a temp table, ANALYZE it, one join UPDATE, COMMIT: every statement timed."""
        times = psql_times(self.database_url, self.copy_script)
        return Measurement(seconds=sum(times), units=self.rows)

    def run_same_work(self):
        """COPY, ANALYZE, the totals' join UPDATE, the history and site upserts, COMMIT."""
        times = psql_times(self.database_url, self.same_work_script)
        return Measurement(seconds=sum(times), units=self.rows)

    def cleanup(self):
        shutil.rmtree(self.directory, ignore_errors=True)
