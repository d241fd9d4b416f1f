"""The installed wheels are typed (py.typed): a project's type checker sees the public API.

mypy (this repository's) checks a small module against the fresh virtual environment, where
casusult-impressions and casusult-queues are installed as a project installs them.
"""

import subprocess
import sys
from pathlib import Path

USES = """
from datetime import date

import impressions
from queues.rq.backend import RQBackend

counts: dict[int, int] = impressions.pending_counts([1, 2])
top: list[tuple[int, int]] = impressions.top_posts(date(2026, 1, 1), date(2026, 1, 31))
days: dict[int, dict[date, int]] = impressions.history([1], date(2026, 1, 1), date(2026, 1, 2))
kind: str = impressions.ping()
pending: int = impressions.buffer_status().pending_impressions


def retries(backend: RQBackend) -> int:
    return backend.max_attempts


wrong: int = impressions.ping()
"""


def test_a_project_s_type_checker_sees_the_api_of_the_wheels(fresh_venv, tmp_path):
    module = tmp_path / "uses_the_api.py"
    module.write_text(USES)
    mypy = Path(sys.executable).parent / "mypy"
    completed = subprocess.run(
        [str(mypy), "--strict", "--no-incremental", "--config-file", "/dev/null",
         "--ignore-missing-imports", "--follow-imports", "silent",
         "--python-executable", str(fresh_venv / "python"), str(module)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    errors = [line for line in completed.stdout.splitlines() if ": error:" in line]
    # Only the deliberate mistake: ping() returns str. Had the wheels no py.typed, every name
    # would be Any and mypy would report nothing at all.
    assert len(errors) == 1, completed.stdout
    assert (
        'Incompatible types in assignment (expression has type "str", variable has type "int")'
        in errors[0]
    )
