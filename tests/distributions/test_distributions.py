"""What `make dist` builds: three wheels and sdists, each file in one wheel only, the site and the
tooling in none, templates, migrations and py.typed in; the site's pins satisfy what they require."""

import tarfile
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = {
    "casusult_impressions": "impressions",
    "casusult_queues": "queues",
    "casusult_redis_endpoints": "redis_endpoints",
}


def wheel_files(built):
    """{wheel name prefix: [paths inside]}, dist-info left out."""
    return {
        path.name.split("-")[0]: [
            name for name in zipfile.ZipFile(path).namelist() if ".dist-info/" not in name
        ]
        for path in built.glob("*.whl")
    }


def test_each_distribution_has_a_wheel_and_an_sdist(built_distributions):
    names = sorted(path.name for path in built_distributions.iterdir())
    assert names == sorted(
        f"{name}-0.1.0{suffix}"
        for name in DISTRIBUTIONS
        for suffix in ("-py3-none-any.whl", ".tar.gz")
    )


def test_each_wheel_holds_its_package_only_and_no_file_twice(built_distributions):
    files = wheel_files(built_distributions)
    for name, package in DISTRIBUTIONS.items():
        assert {path.split("/")[0] for path in files[name]} == {package}
    everything = [path for paths in files.values() for path in paths]
    assert len(everything) == len(set(everything))
    for tooling in ("casusult/", "settings/", "tests/", "benchmarks/", "devservices/", "loadtest/"):
        assert not [path for path in everything if path.startswith(tooling)]


def test_the_wheels_carry_templates_migrations_and_py_typed(built_distributions):
    files = wheel_files(built_distributions)
    for name, package in DISTRIBUTIONS.items():
        assert f"{package}/py.typed" in files[name]
        # Every file of the package in the repository, but caches, is in its wheel.
        source = {
            str(path.relative_to(ROOT))
            for path in (ROOT / package).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        }
        assert source == set(files[name])
    assert "impressions/templates/admin/impressions/dashboard.html" in files["casusult_impressions"]
    assert "queues/migrations/0001_initial.py" in files["casusult_queues"]


def test_the_sdists_carry_the_changelog_and_build_the_same_wheel(built_distributions):
    for name in DISTRIBUTIONS:
        with tarfile.open(built_distributions / f"{name}-0.1.0.tar.gz") as sdist:
            members = sdist.getnames()
        assert f"{name}-0.1.0/CHANGELOG.md" in members
        assert f"{name}-0.1.0/README.md" in members


def declared_requirements():
    """Every requirement of the three distributions, extras included."""
    for pyproject in sorted((ROOT / "distributions").glob("*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        yield from project["dependencies"]
        for extra in project.get("optional-dependencies", {}).values():
            yield from extra


def pinned(path):
    """{name: version} of a requirements or constraints file of `name==version` lines."""
    pins = {}
    for line in path.read_text().splitlines():
        if line := line.split("#")[0].strip():
            requirement = Requirement(line)
            pins[requirement.name.lower()] = next(iter(requirement.specifier)).version
    return pins


def test_the_site_pins_what_the_apps_require():
    """The site installs requirements.txt, not the wheels: its pins must satisfy the apps'."""
    pins = pinned(ROOT / "requirements.txt")
    for text in declared_requirements():
        requirement = Requirement(text)
        if requirement.name.startswith("casusult-"):
            continue  # built from this repository
        assert requirement.name.lower() in pins, f"requirements.txt does not pin {requirement}"
        assert requirement.specifier.contains(pins[requirement.name.lower()]), requirement


def test_make_test_lowest_pins_each_declared_lower_bound():
    """distributions/lowest.txt (`make test-lowest`'s constraints) pins every declared lower bound
    exactly: a raised bound with an old pin would test nothing, a pin past the bound neither."""
    pins = pinned(ROOT / "distributions" / "lowest.txt")
    for text in declared_requirements():
        requirement = Requirement(text)
        if requirement.name.startswith("casusult-"):
            continue
        [lowest] = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        assert requirement.name.lower() in pins, f"lowest.txt does not pin {requirement}"
        assert Version(pins[requirement.name.lower()]) == Version(lowest), requirement


def requires(built, distribution):
    """The Requires-Dist lines of `distribution`'s wheel."""
    [path] = built.glob(f"{distribution}-*.whl")
    with zipfile.ZipFile(path) as wheel:
        metadata = wheel.read(f"{distribution}-0.1.0.dist-info/METADATA").decode()
    return [
        line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Requires-Dist")
    ]


def test_each_app_installs_alone(built_distributions):
    """Neither app requires the other (import-linter keeps them from importing each other); the
    queues wheel needs Django and the endpoints' redaction only, each backend's client comes
    with its extra."""
    impressions = requires(built_distributions, "casusult_impressions")
    queues = requires(built_distributions, "casusult_queues")
    assert not [line for line in impressions if "queues" in line]
    assert not [line for line in queues if "impressions" in line]
    assert [line for line in queues if "extra ==" not in line] == [
        "Django>=6.1", "casusult-redis-endpoints<0.2,>=0.1"
    ]  # fmt: skip
    assert {Requirement(line).name for line in queues if "extra ==" in line} == {
        "rq", "redis", "django-rq", "boto3"
    }  # fmt: skip
