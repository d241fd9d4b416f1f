"""The build backend of the repository root, which is the demo site and no distribution.

`pip install .` or `pip wheel .` at the root would otherwise build something confusing (setuptools
finds several top-level packages, or packs the site); this backend says what to do instead.
"""

MESSAGE = """
This repository's root is the Casusult demo site, not a Python distribution.
The reusable apps are built by `make dist` into dist/ (wheels and sdists):
  casusult-impressions      (import impressions; extra: postgresql)
  casusult-queues           (import queues; extras: rq, sqs)
  casusult-redis-endpoints  (import redis_endpoints; a dependency of both)
Install them from there, e.g.:
  pip install --find-links dist "casusult-impressions[postgresql]" "casusult-queues[rq]"
To run the site itself: `make run` (or `make venv`, which installs requirements-dev.txt).
"""


def _refuse(*args, **kwargs):
    raise SystemExit(MESSAGE)


get_requires_for_build_wheel = get_requires_for_build_sdist = _refuse
get_requires_for_build_editable = prepare_metadata_for_build_wheel = _refuse
build_wheel = build_sdist = build_editable = _refuse
