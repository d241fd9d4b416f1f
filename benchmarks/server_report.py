"""The real-server section's tables: req/s, latency, CPU and rows per request, and the ratios.

Impressions on ÷ off, and the large table ÷ the small one, are judged on paired ratios: the runs
compared run close together in a round (benchmarks.server.round_order), so the ratio of that
round's two runs cancels most of the load other jobs put on the machine, which moves single req/s
figures far more (±30 % and worse) than recording or the table's size costs. A ratio of medians
over unpaired runs mixes rounds of different loads.
"""

import math
import os
from dataclasses import dataclass

from .harness import format_ratio, markdown_table, median, ratio
from .server import KINDS, VIEWERS, WARM_UP_SECONDS, Case

GOAL = 0.9  # req/s with impressions on ÷ off, for every viewer kind (the timeline issue's goal)


@dataclass
class Summary:
    """Median, min and max of some paired ratios, and how many there were."""

    median: float
    low: float
    high: float
    count: int

    def verdict(self, goal=GOAL):
        """By the median: "met" or "missed"; "n/a" when there is no ratio at all."""
        if math.isnan(self.median):
            return "n/a"
        return "met" if self.median >= goal else "missed"

    def text(self):
        """Like "**0.93** (0.81 to 1.05)": the median in bold, the range beside it."""
        if math.isnan(self.median):
            return "n/a"
        return f"**{self.median:.2f}** ({self.low:.2f} to {self.high:.2f})"


def paired_ratios(on_runs, off_runs, key, inverse=False):
    """For every round in which both sides of a pair ran, on ÷ off of the figure `key` of that
    round (off ÷ on with `inverse`, for a cost such as CPU per request, so that above 1 is
    always "on is cheaper"). Rounds in which one side failed, and NaN ratios, are left out."""
    off_by_round = {run["round"]: run[key] for run in off_runs}
    values = []
    for run in on_runs:
        if run["round"] not in off_by_round:
            continue
        on, off = run[key], off_by_round[run["round"]]
        value = ratio(off, on) if inverse else ratio(on, off)
        if not math.isnan(value):
            values.append(value)
    return values


def summarize(values):
    """A Summary of ratios; NaN figures when there are none."""
    if not values:
        return Summary(math.nan, math.nan, math.nan, 0)
    return Summary(median(values), min(values), max(values), len(values))


def pooled(paired, part):
    """{key: paired ratios} to {part(key): Summary of all of them}, in first-seen order."""
    groups = {}
    for key, values in paired.items():
        groups.setdefault(part(key), []).extend(values)
    return {name: summarize(values) for name, values in groups.items()}


def by_kind(paired):
    """{(posts, page, kind): paired ratios} to {kind: Summary of all of them}, every size, page
    and round pooled: the goal is per viewer kind, and pooling gives its median more ratios to
    stand on than one case's few rounds. Every kind is there, with no ratios if it had none."""
    kinds = pooled(paired, lambda key: key[2])
    return {kind: kinds.get(kind, summarize([])) for kind in [*KINDS, *kinds]}


def render(cases, results, figures, prepared, load, options):
    by_name = {result.name: result for result in results}

    def rate(case):
        result = by_name[case.name]
        return result.median_rate if result.ok else float("nan")

    def rate_text(case):
        return "FAILED" if by_name[case.name].error else f"{rate(case):,.0f}"

    def figure(case, key):
        return median([f[key] for f in figures.get(case.name, [])])

    def pair(on, off, fmt):
        return f"{fmt(on)} / {fmt(off)}"

    def paired(on, off, key, inverse=False):
        return paired_ratios(figures.get(on.name, []), figures.get(off.name, []), key, inverse)

    rows, found = [], {"on_off": {}, "on_off_cpu": {}, "sizes": {}, "sizes_cpu": {}, "rows": []}
    found["paired"], found["paired_cpu"] = {}, {}
    found["sizes_paired"], found["sizes_cpu_paired"] = {}, {}
    for case in cases:
        if not case.recording:
            continue
        off = Case(case.posts, case.page, case.kind, False)
        key = case.key
        found["paired"][key] = paired(case, off, "rate")
        found["paired_cpu"][key] = paired(case, off, "cpu", inverse=True)
        found["on_off"][key] = median(found["paired"][key])
        found["on_off_cpu"][key] = median(found["paired_cpu"][key])
        found["rows"] += [figure(case, "rows"), figure(off, "rows")]
        rows.append(
            [
                f"{case.posts:,}",
                case.page,
                case.kind,
                f"{rate_text(case)} / {rate_text(off)}",
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
                found["sizes_paired"][key] = paired(big, little, "rate")
                found["sizes_cpu_paired"][key] = paired(big, little, "cpu", inverse=True)
                found["sizes"][key] = median(found["sizes_paired"][key])
                found["sizes_cpu"][key] = median(found["sizes_cpu_paired"][key])
                size_rows.append(
                    [
                        page,
                        kind,
                        "on" if recording else "off",
                        format_ratio(found["sizes"][key]),
                        format_ratio(found["sizes_cpu"][key]),
                    ]
                )
    found["kinds"] = by_kind(found["paired"])
    found["kinds_cpu"] = by_kind(found["paired_cpu"])
    found["pages"] = pooled(found["sizes_paired"], lambda key: key[0])
    found["pages_cpu"] = pooled(found["sizes_cpu_paired"], lambda key: key[0])
    table = markdown_table(
        [
            "posts", "page", "viewer", "req/s on / off", "on ÷ off (paired)", "p50 ms on / off",
            "p99 ms on / off", "CPU ms/request on / off", "CPU off ÷ on (paired)",
            "rows written/request on / off", "pg_stat_database on / off",
        ],
        rows,
    )  # fmt: skip
    kind_table = markdown_table(
        [
            "viewer", "paired runs", "req/s on ÷ off: median (min to max)", f"goal ≥ {GOAL}",
            "CPU/request off ÷ on: median (min to max)",
        ],
        [
            [
                kind, str(summary.count), summary.text(), summary.verdict(),
                found["kinds_cpu"][kind].text(),
            ]
            for kind, summary in found["kinds"].items()
        ],
    )  # fmt: skip
    size_table = markdown_table(
        [
            "page", "viewer", "impressions", f"req/s at {large:,} ÷ at {small:,} posts (paired)",
            f"CPU/request at {small:,} ÷ at {large:,} (paired)",
        ],
        size_rows,
    )  # fmt: skip
    page_table = markdown_table(
        [
            "page", "paired runs", f"req/s at {large:,} ÷ at {small:,}: median (min to max)",
            f"goal ≥ {GOAL}", f"CPU/request at {small:,} ÷ at {large:,}: median (min to max)",
        ],
        [
            [
                page, str(summary.count), summary.text(), summary.verdict(),
                found["pages_cpu"][page].text(),
            ]
            for page, summary in found["pages"].items()
        ],
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
        " User-Agent each). Impressions off = `IMPRESSIONS_ENABLED=false`."
        f" {options.server_rounds} round(s); in each, the cases of a (page, viewer) run"
        " together, small table on, off, large table on, off in round 1, the reverse in round 2"
        " and so on (a run finds the caches the one before warmed), the groups' order rotated"
        " by one each round. The *(paired)* columns are medians over rounds of the ratio of a"
        " round's two runs, which share the machine's load of the moment; req/s, latency and"
        " CPU are medians over rounds. The per-viewer table pools every paired on ÷ off ratio of"
        " a kind (both sizes and pages, every round), the per-page table every paired large ÷"
        f" small ratio of a page (every viewer, on and off, every round), against {GOAL}. The 4"
        " servers run side by"
        " side, idle but the one under load. Load average (1 min) before and after:"
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
    failures = "".join(
        f"\n- FAILED: {result.name}: {result.error}" for result in results if result.error
    )
    body = f"{intro}\n\n{kind_table}\n\n{page_table}\n\n{table}\n\n{size_table}"
    return body + (f"\n{failures}" if failures else ""), found


def page_names(summaries):
    return {f"page {page}": summary for page, summary in summaries.items()}


def headlines(found):
    def kinds(summaries, verdicts):
        return "; ".join(
            f"{kind} {summary.text()}" + (f" {summary.verdict()}" if verdicts else "")
            for kind, summary in summaries.items()
        )

    return [
        f"Real server, req/s at the large table ÷ at the small one, paired rounds by page, median"
        f" (min to max): {kinds(page_names(found['pages']), True)}; goal ≥ {GOAL}. CPU per"
        f" request small ÷ large: {kinds(page_names(found['pages_cpu']), False)}.",
        f"Real server, req/s with impressions on ÷ off, paired rounds by viewer kind, median"
        f" (min to max): {kinds(found['kinds'], True)}; goal ≥ {GOAL}. CPU per request off ÷ on:"
        f" {kinds(found['kinds_cpu'], False)}.",
        f"Real server, database rows written per timeline request: at most"
        f" **{max((v for v in found['rows'] if v == v), default=float('nan')):.3g}** in any case.",
    ]
