"""The flush's raw limit: the best SQL alone, sent by psql (C) and timed by its \\timing."""

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .harness import ContenderFailed, Measurement

TIME_LINE = re.compile(r"^Time: ([0-9.]+) ms", re.MULTILINE)
UNNEST_UPDATE = (
    "UPDATE casusult_post AS p SET impressions = p.impressions + u.c"
    " FROM unnest('{{{ids}}}'::bigint[], '{{{counts}}}'::bigint[]) AS u(id, c) WHERE p.id = u.id;\n"
)
COPY_UPDATE = """BEGIN;
CREATE TEMP TABLE bench_pending (id bigint PRIMARY KEY, c bigint) ON COMMIT DROP;
\\copy bench_pending FROM '{csv}' WITH (FORMAT csv)
ANALYZE bench_pending;
UPDATE casusult_post AS p SET impressions = p.impressions + b.c FROM bench_pending AS b
 WHERE p.id = b.id;
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
    """SQL files for one pending workload, written once (untimed) and replayed each round."""

    def __init__(self, database_url, pending_counts):
        self.database_url = database_url
        self.rows = len(pending_counts)
        self.directory = Path(tempfile.mkdtemp(prefix="casusult-bench-sql-"))
        ids = ",".join(str(post_id) for post_id in pending_counts)
        counts = ",".join(str(count) for count in pending_counts.values())
        self.unnest_script = self.directory / "unnest.sql"
        self.unnest_script.write_text(
            "\\timing on\n" + UNNEST_UPDATE.format(ids=ids, counts=counts)
        )
        csv_path = self.directory / "pending.csv"
        csv_path.write_text(
            "".join(f"{post_id},{count}\n" for post_id, count in pending_counts.items())
        )
        self.copy_script = self.directory / "copy.sql"
        self.copy_script.write_text("\\timing on\n" + COPY_UPDATE.format(csv=csv_path))

    def run_unnest(self):
        """One UPDATE ... FROM unnest(array literal, array literal), parse included."""
        times = psql_times(self.database_url, self.unnest_script)
        return Measurement(seconds=sum(times), units=self.rows)

    def run_copy(self):
        """COPY into a temp table, ANALYZE it, one join UPDATE, COMMIT: every statement timed."""
        times = psql_times(self.database_url, self.copy_script)
        return Measurement(seconds=sum(times), units=self.rows)

    def cleanup(self):
        shutil.rmtree(self.directory, ignore_errors=True)
