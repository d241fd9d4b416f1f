"""The apps' static files as production builds them: collectstatic with Django's
ManifestStaticFilesStorage (hashed names, each url() and source map rewritten, a missing one an
error) in a fresh project on the installed wheels, the impressions quick start's. With DEBUG off,
a `{% static %}` name missing from the manifest is a 500 on the page that names it."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = """
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
STATIC_ROOT = BASE_DIR / "static-build"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}
"""
STATIC_TAG = re.compile(r"""\{% static ['"]([^'"]+)['"] %\}""")


def named_in_templates(package):
    """Every file the package's templates name with {% static %}."""
    return {
        name
        for template in (ROOT / package / "templates").rglob("*.html")
        for name in STATIC_TAG.findall(template.read_text())
    }


def test_collectstatic_with_the_manifest_hashes_every_file_the_apps_ship_and_name(new_project):
    project = new_project("blog")
    project.apply("impressions/quickstart.md", {})  # collectstatic reaches neither Redis nor SQL
    with (project.path / "mysite" / "settings.py").open("a") as settings:
        settings.write(PRODUCTION)

    project.manage("collectstatic", "--noinput")

    build = project.path / "static-build"
    manifest = json.loads((build / "staticfiles.json").read_text())["paths"]
    for package in ("impressions", "queues"):
        shipped = {
            str(path.relative_to(ROOT / package / "static"))
            for path in (ROOT / package / "static").rglob("*")
            if path.is_file()
        }
        named = named_in_templates(package)
        assert shipped and named
        assert shipped | named <= manifest.keys(), (shipped | named) - manifest.keys()
        for name in shipped:
            assert manifest[name] != name  # hashed, so that it may be cached for a year
            assert (build / manifest[name]).is_file()
