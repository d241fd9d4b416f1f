"""Build the apps' wheels and sdists into a folder: `python distributions/build.py dist`.

Each distribution is staged in a temporary directory holding only its package (from the
repository root, where the demo site imports it), its pyproject.toml, README.md and CHANGELOG.md;
`python -m build` then makes the sdist and, from that sdist, the wheel. So the site and the
tooling never reach a wheel, and a file the sdist lacks fails the wheel's build.
"""

import argparse
import concurrent.futures
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
# Distribution folder (under distributions/) -> the package it ships from the repository root.
PACKAGES = {"redis_endpoints": "redis_endpoints", "impressions": "impressions", "queues": "queues"}
SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")


def stage(name, into):
    """Copy distribution `name`'s files into the empty directory `into`."""
    for file in ("pyproject.toml", "README.md", "CHANGELOG.md"):
        shutil.copy2(HERE / name / file, into / file)
    (into / "MANIFEST.in").write_text("include CHANGELOG.md\n")  # the sdist carries it too
    package = PACKAGES[name]
    shutil.copytree(ROOT / package, into / package, ignore=SKIPPED)


def build(name, outdir):
    """Build distribution `name`'s sdist and wheel into `outdir`."""
    with tempfile.TemporaryDirectory(prefix=f"dist-{name}-") as tmp:
        staged = Path(tmp)
        stage(name, staged)
        # --no-isolation: setuptools comes from this environment (requirements-dev.txt), so a
        # build needs no download.
        command = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(outdir)]
        completed = subprocess.run(
            [*command, str(staged)], capture_output=True, text=True, check=False
        )
        if completed.returncode != 0:
            raise SystemExit(f"building {name} failed:\n{completed.stdout}\n{completed.stderr}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path, help="where the wheels and sdists go")
    options = parser.parse_args(argv)
    outdir = options.outdir.resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    # Side by side: each build is a few setuptools processes, mostly waiting on the disk.
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(PACKAGES)) as pool:
        for done in [pool.submit(build, name, outdir) for name in PACKAGES]:
            done.result()
    for built in sorted(outdir.iterdir()):
        print(built.name)


if __name__ == "__main__":
    main()
