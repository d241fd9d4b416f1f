"""Where ours spends its time: cProfile, split into PostgreSQL, Redis and Python of our own."""

import cProfile
import pstats
import re
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import PurePath

from .harness import format_seconds, markdown_table


def _psycopg(file, module):
    return "/psycopg/" in file and PurePath(file).name == module


def _is_wait(file, name):
    return _psycopg(file, "connection.py") and name == "wait"


def _is_statement(file, name):
    return (_psycopg(file, "cursor.py") and name in ("execute", "executemany", "fetchall")) or (
        _psycopg(file, "connection.py") and name == "commit"
    )


def _is_redis(file, name):
    return file.endswith("redis/client.py") and name == "execute_command"


def profile(function):
    """Run `function` under cProfile; returns (result, pstats.Stats)."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        result = function()
    finally:
        profiler.disable()
    return result, pstats.Stats(profiler)


def cumulative(stats, matches):
    return sum(
        entry[3] for (file, _line, name), entry in stats.stats.items() if matches(file, name)
    )


def own(stats, matches):
    return sum(
        entry[2] for (file, _line, name), entry in stats.stats.items() if matches(file, name)
    )


def breakdown(stats):
    """(total, [(part, seconds)]): the database wait, psycopg's own work, Redis, the rest.

    psycopg composes a statement inside the generator its `wait` drives, so the server's share
    is wait's own time (blocked on the socket), not its cumulative time.
    """
    total = stats.total_tt
    waiting = own(stats, _is_wait)
    statements = cumulative(stats, _is_statement)
    redis = cumulative(stats, _is_redis)
    return total, [
        ("PostgreSQL: waiting for the server (psycopg wait)", waiting),
        (
            "psycopg in Python: composing statements (client-side binding), reading rows",
            statements - waiting,
        ),
        ("Redis: commands and scripts, round trips included", redis),
        ("Python around them (ours, Django, redis-py arguments)", total - statements - redis),
    ]


def top_functions(stats, limit=12):
    """The functions with the most time of their own (excluding what they call)."""
    entries = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:limit]
    rows = []
    for (file, line, name), (_cc, calls, own, cumulative, _callers) in entries:
        where = name if file == "~" else f"{shorten(file)}:{line} {name}"
        rows.append([where, f"{calls:,}", format_seconds(own), format_seconds(cumulative)])
    return rows


def shorten(file):
    marker = "site-packages/"
    if marker in file:
        return file.split(marker, 1)[1]
    parts = PurePath(file).parts
    return "/".join(parts[-2:])


def render(title, stats):
    total, rows = breakdown(stats)
    parts = markdown_table(
        ["part", "time", "share"],
        [[label, format_seconds(s), f"{100 * s / total:.0f} %"] for label, s in rows if s > 0],
    )
    top = markdown_table(
        ["function (own time)", "calls", "own", "cumulative"], top_functions(stats)
    )
    return (
        f"**{title}**: {format_seconds(total)} under cProfile (which slows Python down, not"
        f" the servers).\n\n{parts}\n\nTop functions by own time:\n\n{top}"
    )


@contextmanager
def statement_timer():
    """Time every SQL statement Django runs in the block; yields {statement shape: [n, s]}."""
    from django.db import connection

    timings = defaultdict(lambda: [0, 0.0])

    def timed_execute(execute, sql, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            shape = re.sub(r"\s+", " ", sql)[:90]
            timings[shape][0] += 1
            timings[shape][1] += time.perf_counter() - start

    with connection.execute_wrapper(timed_execute):
        yield timings


def render_statements(timings):
    rows = sorted(timings.items(), key=lambda item: item[1][1], reverse=True)
    return "Statements (timed around Django's execute; COMMIT is not a statement here):\n\n" + (
        markdown_table(
            ["SQL (first 90 characters)", "runs", "total"],
            [[f"`{shape}`", str(n), format_seconds(s)] for shape, (n, s) in rows],
        )
    )
