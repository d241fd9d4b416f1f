"""Section "Record path under load": paired, alternating rounds over 1-8 processes for each target
(standalone, 3-node cluster) and workload (first views, reloads); tables, headlines, figures."""

from dataclasses import dataclass, field

from . import pinning, targets
from .harness import (
    ContenderFailed,
    Spread,
    format_rate,
    format_seconds,
    markdown_table,
    median,
    paired_ratios,
    percentile,
)
from .recordload import (
    CEILING_CLIENTS,
    FIRST_VIEWS,
    GOAL_CEILING,
    GOAL_PER_PROCESS,
    OURS,
    PAGE,
    PAGES_PER_VIEWER,
    RAW,
    RELOAD_PAIRS,
    RELOADS,
    SCROLLS,
    SLICES,
    LoadBench,
)

WORKLOADS = (FIRST_VIEWS, SCROLLS, RELOADS)
# Workloads redis-benchmark can send too (its random keys cannot make a viewer scroll).
CEILINGED = (FIRST_VIEWS, RELOADS)
TARGETS = ("standalone", "cluster")


@dataclass
class WorkloadRuns:
    """Every run of one workload on one target: {processes: {contender: [run per round]}}."""

    cells: dict = field(default_factory=dict)
    ceilings: list = field(default_factory=list)  # one redis-benchmark run per round

    def ratio_to_raw(self, processes):
        cell = self.cells[processes]
        return Spread.of(paired_ratios([r.rate for r in cell[OURS]], [r.rate for r in cell[RAW]]))

    def ratio_to_ceiling(self, processes, contender=OURS):
        if not self.ceilings:
            return Spread.of([])
        rates = [r.rate for r in self.cells[processes][contender]]
        return Spread.of(paired_ratios(rates, [r.rate for r in self.ceilings]))

    def best_to_ceiling(self):
        """(processes, Spread) where ours comes closest to the ceiling."""
        spreads = [(n, self.ratio_to_ceiling(n)) for n in self.cells]
        return max(spreads, key=lambda item: item[1].median, default=(None, Spread.of([])))


@dataclass
class TargetRuns:
    name: str
    workloads: dict = field(default_factory=dict)
    simple_command_cpu: float | None = None  # Redis CPU of one 3-byte SET (redis-benchmark)
    error: str | None = None
    pinned: pinning.Pinning | None = None  # the servers on one CPU, the clients on the others
    unpinned: str | None = None  # pinned: the name of the same target's unpinned runs


def measure(bench, processes, rounds, log=print):
    """Rounds of: the process counts (ascending, then descending), ours and raw in alternating
    slices of one run at each (which goes first alternating too), and the ceiling at a rotating
    place; paired ratios come from one run (ours and raw) or one round (the ceiling)."""
    runs = TargetRuns(bench.target.name)
    for workload in WORKLOADS:
        log(f"  {bench.target.name}: {workload}")
        found = runs.workloads[workload] = WorkloadRuns(
            cells={n: {OURS: [], RAW: []} for n in processes}
        )
        for round_number in range(rounds):
            order = processes if round_number % 2 == 0 else processes[::-1]
            # No ceiling for scrolls: None never equals a place.
            ceiling_at = round_number % (len(order) + 1) if workload in CEILINGED else None
            for place, count in enumerate(order):
                if place == ceiling_at:
                    found.ceilings.append(bench.ceiling(workload))
                ours_first = (round_number + place) % 2 == 0
                for contender, run in bench.run_pair(workload, count, ours_first).items():
                    found.cells[count][contender].append(run)
            if ceiling_at == len(order):
                found.ceilings.append(bench.ceiling(workload))
    runs.simple_command_cpu = bench.simple_command_cpu()
    return runs


def run(options, post_ids, log=print):
    """(markdown, figures) of the whole section."""
    chosen = options.load_targets
    pin = getattr(options, "load_pin", False)
    log(
        f"record path under load: {', '.join(chosen)}{', unpinned and pinned' if pin else ''};"
        f" processes {options.load_processes}, {options.load_seconds} s a run,"
        f" {options.rounds} round(s)"
    )
    pinned = None
    if pin:
        try:
            pinned = pinning.Pinning.split()
        except ContenderFailed as error:
            log(f"  pinned runs: FAILED: {error}")
            pin_error = str(error)
    results = []
    for name in chosen:
        unpinned = measure_target(name, options, post_ids, None, log)
        results.append(unpinned)
        if pin and pinned is None:
            results.append(TargetRuns(f"{name}, pinned", error=pin_error))
        elif pin:
            # This process too (it samples INFO and forks the load processes): a client.
            with pinning.this_process(pinned.clients):
                runs = measure_target(name, options, post_ids, pinned, log)
            runs.unpinned = unpinned.name
            results.append(runs)
    return render(results, options), figures(results)


def measure_target(name, options, post_ids, pinned, log):
    """TargetRuns of one target; `pinned`: servers started for it, pinned as it says."""
    if name == "cluster":
        opener = targets.cluster(pinned)
    elif pinned:
        opener = targets.standalone_server(pinned)
    else:
        opener = targets.standalone(options.redis_url)
    try:
        with opener as target:
            bench = LoadBench(target, post_ids, options.load_processes, options.load_seconds, log)
            try:
                runs = measure(bench, options.load_processes, options.rounds, log)
                bench.check_still_pinned()
            finally:
                bench.close()
    except ContenderFailed as error:
        label = f"{name}, pinned" if pinned else name
        log(f"  {label}: FAILED: {error}")
        return TargetRuns(label, error=str(error), pinned=pinned)
    runs.pinned = pinned
    return runs


def render(results, options):
    text = (
        f"Each run: N forked processes record timeline pages of {PAGE} posts against a Redis"
        f" emptied before it, ours and raw taking turns in {SLICES} slices each"
        f" ({options.load_seconds / SLICES:.2g} s), every process switching at the same moments"
        " (which contender starts alternates), so both meet the same machine: a paired ratio"
        " comes from one run. **First views**: each call is a new viewer's first page, so it"
        f" counts {PAGE} new posts and reaches Redis (the key pattern redis-benchmark sends: the"
        f" same work for the server). **Scrolls**: each viewer sees {PAGES_PER_VIEWER[SCROLLS]}"
        " pages, every call still counting 20 new posts, but the second and third find the"
        " viewer's sorted set (more work for the server; redis-benchmark cannot send it)."
        f" **Reloads**: each process first records {RELOAD_PAIRS:,} (viewer, page) pairs"
        " (untimed), then serves them again and again inside the window: nothing counts, and ours'"
        " reload cache answers without Redis. **ours**: `impressions.record(request, posts)` with a"
        " logged-in viewer's session. **raw**: the same RECORD script, keys and arguments (built"
        " untimed by the recorder's own `record_call`) sent with EVALSHA from a plain redis-py"
        " client with ours' 50 ms timeout. **redis-benchmark**: the same script, EVALSHA from"
        f" {CEILING_CLIENTS} connections (`--cluster` on the cluster), a fresh viewer and posts per"
        " call (`__rand_int__`; for reloads one viewer and page per node): the server's ceiling."
        " impressions/s counts impressions recorded (counted, or de-duplicated on a reload);"
        " failed calls do not count. Redis CPU: `used_cpu_user + used_cpu_sys` deltas of INFO,"
        " summed over the nodes, per recorded impression. Ratios are paired by round: median"
        " (min to max). Every run is checked: the calls counted every first view and no reload,"
        " and Redis holds exactly what they counted.\n"
    )
    pinned = next((runs.pinned for runs in results if runs.pinned), None)
    if pinned:
        text += (
            f"\n**Pinned** (`--load-pin`; {pinned.describe()}): each target again, on Redis"
            " servers started for these runs (a redis-server of its own for the standalone, never"
            " the shared one; a new 3-node cluster), every server thread pinned to the server CPU"
            " and every client (the load processes, redis-benchmark, and the process that samples"
            " INFO) to the others, each pinning read back from /proc. It models clients on other"
            " hosts: every contender's run, the ceiling's included, leaves the servers the same CPU"
            " budget whatever its clients cost. The unpinned tables are what this machine gives"
            " with clients and servers sharing its CPUs.\n"
        )
    for runs in results:
        text += f"\n**{runs.name}**\n\n"
        if runs.error:
            text += f"FAILED: {runs.error}\n"
            continue
        text += table(runs) + "\n"
    if pinned:
        text += (
            "\n**First views, unpinned and pinned side by side** (Redis cores busy: impressions/s"
            " × Redis CPU per impression, all nodes)\n\n"  # noqa: RUF001
        )
        text += side_by_side(results) + "\n"
    return text


def side_by_side(results):
    rows = []
    for runs in results:
        if runs.error:
            continue
        found = runs.workloads[FIRST_VIEWS]
        ceilings = found.ceilings
        for count, cell in found.cells.items():
            ours, raw = cell[OURS], cell[RAW]
            rows.append(
                [
                    runs.name,
                    str(count),
                    rate_of(ours),
                    rate_of(raw),
                    format_rate(median([r.rate for r in ceilings])),
                    found.ratio_to_ceiling(count).text(),
                    found.ratio_to_ceiling(count, RAW).text(),
                    found.ratio_to_raw(count).text(),
                    " / ".join(cpu_text(cpu_of(x)) for x in (ours, raw, ceilings)),
                    " / ".join(f"{cores_of(x):.2f}" for x in (ours, raw, ceilings)),
                ]
            )
    return markdown_table(
        [
            "target",
            "processes",
            "ours impressions/s",
            "raw impressions/s",
            "redis-benchmark impressions/s",
            "ours ÷ redis-benchmark",
            "raw ÷ redis-benchmark",
            "ours ÷ raw",
            "Redis CPU per impression: ours / raw / redis-benchmark",
            "Redis cores busy: ours / raw / redis-benchmark",
        ],
        rows,
    )


def cores_of(runs):
    """Redis CPU seconds a second (all nodes) in these runs: their median."""
    return median([r.rate * r.cpu_per_impression for r in runs])


def table(runs):
    rows = []
    for workload, found in runs.workloads.items():
        ceiling = median([r.rate for r in found.ceilings])
        ceiling_cpu = median([r.cpu_per_impression for r in found.ceilings])
        for count, cell in found.cells.items():
            ours, raw = cell[OURS], cell[RAW]
            rows.append(
                [
                    workload,
                    str(count),
                    rate_of(ours),
                    rate_of(raw),
                    found.ratio_to_raw(count).text(),
                    format_rate(ceiling),
                    found.ratio_to_ceiling(count).text(),
                    found.ratio_to_ceiling(count, RAW).text(),
                    " / ".join(cpu_text(x) for x in (cpu_of(ours), cpu_of(raw), ceiling_cpu)),
                    f"{latency(ours, 50)} / {latency(raw, 50)}",
                    f"{latency(ours, 99)} / {latency(raw, 99)}",
                    f"{sum(r.lost for r in ours):,} / {sum(r.lost for r in raw):,}",
                ]
            )
    return markdown_table(
        [
            "workload",
            "processes",
            "ours impressions/s",
            "raw impressions/s",
            "ours ÷ raw",
            "redis-benchmark impressions/s",
            "ours ÷ redis-benchmark",
            "raw ÷ redis-benchmark",
            "Redis CPU per impression: ours / raw / redis-benchmark",
            "p50 ours / raw",
            "p99 ours / raw",
            "lost ours / raw",
        ],
        rows,
    )


def rate_of(runs):
    text = format_rate(median([r.rate for r in runs]))
    return text + (" (ran out of calls)" if any(r.exhausted for r in runs) else "")


def cpu_of(runs):
    return median([r.cpu_per_impression for r in runs])


def cpu_text(seconds):
    return format_seconds(seconds)


def latency(runs, q):
    return format_seconds(percentile([value for r in runs for value in r.latencies], q))


def figures(results):
    """What the capacity plan and the headlines read: {target: {...}}."""
    out = {}
    for runs in results:
        if runs.error:
            continue
        first = runs.workloads[FIRST_VIEWS]
        most = max(first.cells)
        # The capacity plan takes the heavier scrolls (viewers with a sorted set) when measured.
        heavy = runs.workloads.get(SCROLLS, first)
        out[runs.name] = {
            "scrolls_per_process": heavy.ratio_to_raw(min(heavy.cells)),
            "per_process": first.ratio_to_raw(min(first.cells)),
            "best_to_ceiling": first.best_to_ceiling(),
            "raw_to_ceiling": first.ratio_to_ceiling(first.best_to_ceiling()[0], RAW),
            "reloads_per_process": runs.workloads[RELOADS].ratio_to_raw(min(first.cells)),
            "cpu_per_impression": cpu_of(heavy.cells[most][OURS]),
            "cpu_per_impression_fresh": cpu_of(first.cells[most][OURS]),
            "reload_cpu_per_impression": cpu_of(runs.workloads[RELOADS].cells[most][OURS]),
            "reload_raw_cpu_per_impression": cpu_of(runs.workloads[RELOADS].cells[most][RAW]),
            "p99": percentile([v for r in heavy.cells[most][OURS] for v in r.latencies], 99),
            "most_processes": most,
            "bytes_per_call": median([r.bytes_per_call for r in heavy.cells[most][OURS]]),
            "ceiling_rate": median([r.rate for r in first.ceilings]),
            "ceiling_cpu_per_impression": median([r.cpu_per_impression for r in first.ceilings]),
            "simple_command_cpu": runs.simple_command_cpu,
            "ours_rate": {n: median([r.rate for r in c[OURS]]) for n, c in first.cells.items()},
            "to_ceiling": {
                n: (first.ratio_to_ceiling(n), first.ratio_to_ceiling(n, RAW)) for n in first.cells
            },
            "pinned": runs.pinned,
            "unpinned": runs.unpinned,
        }
    return out


def headlines(found):
    lines = []
    for name, figures_ in found.items():
        if figures_.get("pinned"):
            lines.append(pinned_headline(name, figures_, found.get(figures_["unpinned"])))
            continue
        per_process = figures_["per_process"]
        count, best = figures_["best_to_ceiling"]
        reloads = figures_["reloads_per_process"]
        lines.append(
            f"Record path, first views, {name}: ours ÷ raw redis-py (same script), one process"
            f" **{per_process.text()}** ({verdict(per_process, GOAL_PER_PROCESS)});"
            f" ours with {count} processes ÷ redis-benchmark's ceiling **{best.text()}**"
            f" ({verdict(best, GOAL_CEILING)}; raw redis-py in the same runs:"
            f" {figures_['raw_to_ceiling'].text()}). Scrolls, one process: ours ÷ raw"
            f" {figures_['scrolls_per_process'].text()}. Reloads, one process: ours ÷ raw"
            f" **{reloads.text(1)}**."
        )
    return lines


def pinned_headline(name, figures_, unpinned):
    count, best = figures_["best_to_ceiling"]
    line = (
        f"Record path, first views, {name} ({figures_['pinned'].describe()}: clients on other"
        f" hosts, modelled): ours with {count} processes ÷ redis-benchmark's ceiling"
        f" **{best.text()}** ({verdict(best, GOAL_CEILING)}; raw redis-py in the same runs:"
        f" {figures_['raw_to_ceiling'].text()})"
    )
    if unpinned and count in unpinned["to_ceiling"]:
        ours, raw = unpinned["to_ceiling"][count]
        line += f"; unpinned, what this machine gives: {ours.text()} (raw {raw.text()})"
    return line + "."


def verdict(spread, goal):
    return f"goal ≥ {goal}: {'met' if spread.meets(goal) else 'missed'}"
