"""Shared by the apps' translation tests: makemessages in a copy of an app's directory, as an
adopter runs it, and a catalogue built with msgfmt (both need Debian's `gettext`)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOOLS = ("xgettext", "msgmerge", "msguniq", "msgfmt")


def require_gettext_tools():
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: install GNU gettext (apt-get install gettext;"
            " `make test` does so as root)"
        )


def make_messages(app, into):
    """The msgids (msgid, msgid_plural or None) `django-admin makemessages -l de` extracts in a
    copy of `app`'s directory (its own locale/ included)."""
    require_gettext_tools()
    copy = into / app
    shutil.copytree(REPO / app, copy, ignore=shutil.ignore_patterns("__pycache__"))
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-m", "django", "makemessages", "-l", "de"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return po_entries((copy / "locale" / "de" / "LC_MESSAGES" / "django.po").read_text())


def po_entries(text):
    """{msgid: msgid_plural or None} of a .po file's text (msgctxt left out)."""
    entries, key, parts = {}, None, {}
    for line in [*text.splitlines(), ""]:
        match = re.match(r'(msgid|msgid_plural|msgstr(?:\[\d\])?|msgctxt) "(.*)"$', line)
        if match:
            key = match.group(1)
            parts[key] = match.group(2)
        elif line.startswith('"') and key:
            parts[key] += line[1:-1]
        else:
            if parts.get("msgid"):
                entries[parts["msgid"]] = parts.get("msgid_plural")
            key, parts = None, {}
    return entries


def compile_catalogue(locale_dir, language, entries):
    """A django.mo for `language` under `locale_dir` (a project's LOCALE_PATHS entry): entries is
    {msgid: msgstr} or {(msgid, msgid_plural): [msgstr[0], msgstr[1]]}; two plural forms."""
    require_gettext_tools()
    folder = locale_dir / language / "LC_MESSAGES"
    folder.mkdir(parents=True)
    lines = [
        'msgid ""',
        'msgstr ""',
        '"Content-Type: text/plain; charset=UTF-8\\n"',
        '"Plural-Forms: nplurals=2; plural=(n != 1);\\n"',
        "",
    ]
    for msgid, msgstr in entries.items():
        if isinstance(msgid, tuple):
            lines += [f'msgid "{msgid[0]}"', f'msgid_plural "{msgid[1]}"']
            lines += [f'msgstr[{index}] "{text}"' for index, text in enumerate(msgstr)]
        else:
            lines += [f'msgid "{msgid}"', f'msgstr "{msgstr}"']
        lines.append("")
    (folder / "django.po").write_text("\n".join(lines), encoding="utf-8")
    subprocess.run(
        ["msgfmt", "--check-format", "-o", str(folder / "django.mo"), str(folder / "django.po")],
        check=True,
        timeout=30,
    )
