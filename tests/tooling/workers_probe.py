"""Run by tests/tooling/test_workers.py in a pytest of its own; not a test module of the suite
(its name does not start with test_). Writes what this process's settings and a Python process it
starts see into the folder WORKERS_PROBE_OUT names."""

import json
import os
from pathlib import Path

from django.conf import settings

from tests.processes import run_python

SHOW = (
    "from django.conf import settings; print(settings.IMPRESSIONS_REDIS_URL, settings.RQ_REDIS_URL)"
)


def test_probe():
    child = run_python(f"import django; django.setup(); {SHOW}")
    assert child.returncode == 0, child.stderr
    seen = {
        "settings": [settings.IMPRESSIONS_REDIS_URL, settings.RQ_REDIS_URL],
        "child": child.stdout.split(),
    }
    Path(os.environ["WORKERS_PROBE_OUT"], "seen.json").write_text(json.dumps(seen))
