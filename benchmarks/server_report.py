"""The real-server section's tables: req/s, latency, CPU and rows per request, and the ratios."""

import os

from .harness import format_ratio, markdown_table, median, ratio
from .server import KINDS, VIEWERS, WARM_UP_SECONDS, Case


def render(cases, results, figures, prepared, load, options):
    by_name = {result.name: result for result in results}

    def rate(case):
        result = by_name[case.name]
        return result.median_rate if result.ok else float("nan")

    def figure(case, key):
        return median([f[key] for f in figures.get(case.name, [])])

    def pair(on, off, fmt):
        return f"{fmt(on)} / {fmt(off)}"

    rows, found = [], {"on_off": {}, "on_off_cpu": {}, "sizes": {}, "sizes_cpu": {}, "rows": []}
    for case in cases:
        if not case.recording:
            continue
        off = Case(case.posts, case.page, case.kind, False)
        key = (case.posts, case.page, case.kind)
        found["on_off"][key] = ratio(rate(case), rate(off))
        found["on_off_cpu"][key] = ratio(figure(off, "cpu"), figure(case, "cpu"))
        found["rows"] += [figure(case, "rows"), figure(off, "rows")]
        rows.append(
            [
                f"{case.posts:,}",
                case.page,
                case.kind,
                pair(rate(case), rate(off), lambda v: f"{v:,.0f}"),
                format_ratio(found["on_off"][key]),
                pair(figure(case, "p50"), figure(off, "p50"), lambda v: f"{v * 1e3:.1f}"),
                pair(figure(case, "p99"), figure(off, "p99"), lambda v: f"{v * 1e3:.0f}"),
                pair(figure(case, "cpu"), figure(off, "cpu"), lambda v: f"{v * 1e3:.2f}"),
                format_ratio(found["on_off_cpu"][key]),
                pair(figure(case, "rows"), figure(off, "rows"), lambda v: f"{v:.3g}"),
                pair(
                    figure(case, "database_rows"),
                    figure(off, "database_rows"),
                    lambda v: f"{v:.3g}",
                ),
            ]
        )
    small, large = min(options.server_posts), max(options.server_posts)
    size_rows = []
    for page in ("1", str(options.server_depth)):
        for kind in KINDS:
            for recording in (True, False):
                big, little = Case(large, page, kind, recording), Case(small, page, kind, recording)
                key = (page, kind, recording)
                found["sizes"][key] = ratio(rate(big), rate(little))
                found["sizes_cpu"][key] = ratio(figure(little, "cpu"), figure(big, "cpu"))
                size_rows.append(
                    [
                        page,
                        kind,
                        "on" if recording else "off",
                        format_ratio(found["sizes"][key]),
                        format_ratio(found["sizes_cpu"][key]),
                    ]
                )
    table = markdown_table(
        [
            "posts", "page", "viewer", "req/s on / off", "on ÷ off", "p50 ms on / off",
            "p99 ms on / off", "CPU ms/request on / off", "CPU off ÷ on",
            "rows written/request on / off", "pg_stat_database on / off",
        ],
        rows,
    )  # fmt: skip
    size_table = markdown_table(
        [
            "page", "viewer", "impressions", f"req/s at {large:,} ÷ at {small:,} posts",
            f"CPU/request at {small:,} ÷ at {large:,}",
        ],
        size_rows,
    )  # fmt: skip
    table_sizes = " and ".join(f"{entry['posts']:,}" for entry in prepared.values())
    intro = (
        "gunicorn (`casusult/gunicorn_conf.py`, `settings.prod`, 3 processes x 4 threads) and"
        f" wrk (Debian's, `-t2 -c{options.server_connections}`, {options.server_duration} s"
        f" timed after {WARM_UP_SECONDS} s of warm-up per case) on the same machine, with"
        f" PostgreSQL and Redis; tables of {table_sizes} posts; `GET /api/timeline/`, page 1 or"
        f" the page {options.server_depth} pages deep (its cursor made untimed); {VIEWERS}"
        " viewers of each kind, cycled by every wrk connection: logged in (a session cookie),"
        " anonymous with a visitor cookie (made the day before), anonymous without cookies (a"
        " User-Agent each). Impressions off = `IMPRESSIONS_ENABLED=false`. Median of"
        f" {options.server_rounds} round(s), cases interleaved; the 4 servers run side by side,"
        " idle but the one under load. Load average (1 min) before and after:"
        f" {load[0]:.1f} and {load[1]:.1f} on {os.cpu_count()} cores.\n\n"
        "- *CPU ms/request*: CPU time of the gunicorn workers, their PostgreSQL backends and"
        " Redis, divided by the requests (warm-up included; wrk's own is not counted). On a"
        " machine that other jobs share, req/s moves with their load; the CPU a request costs"
        " hardly does, so *CPU off ÷ on* is the steadier estimate of the req/s ratio the site"
        " would have on cores of its own.\n"
        "- *Rows written/request*: inserts + updates + deletes in `pg_stat_user_tables` around"
        " each case (the site's connections are ended first, so PostgreSQL has published their"
        " counts); `pg_stat_database` counts system catalogs too. The flush does not run"
        " (`QUEUE_BACKEND=dummy`): it is the worker's batch job (section 2), not a view's."
    )
    return f"{intro}\n\n{table}\n\n{size_table}", found


def headlines(found):
    def span(values):
        values = [v for v in values if v == v]
        return f"**{min(values):.2f}** to {max(values):.2f}" if values else "n/a"

    return [
        f"Real server, req/s at the large table ÷ at the small one, every case:"
        f" {span(found['sizes'].values())} (CPU per request: {span(found['sizes_cpu'].values())});"
        " goal ≥ 0.9.",
        f"Real server, req/s with impressions on ÷ off, every case:"
        f" {span(found['on_off'].values())} (CPU per request: {span(found['on_off_cpu'].values())});"
        " goal ≥ 0.9.",
        f"Real server, database rows written per timeline request: at most"
        f" **{max((v for v in found['rows'] if v == v), default=float('nan')):.3g}** in any case.",
    ]
