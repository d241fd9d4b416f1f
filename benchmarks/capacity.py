"""The capacity plan: a site of --capacity-impressions counted impressions a day, every figure
computed by a stated formula from this run's measurements (the load, memory, flush and window
sections) and a few stated assumptions. docs/capacity.md explains the plan."""

import math
from dataclasses import dataclass, field

from .harness import format_bytes, format_rate, format_size, markdown_table

DAY = 86_400
# ElastiCache Serverless list prices, us-east-1 (aws.amazon.com/elasticache/pricing, 2026):
# (dollars per million ECPUs, dollars per GB-hour of data stored, GB always metered at least).
PRICES = {"Valkey": (0.0023, 0.084, 0.1), "Redis OSS": (0.0034, 0.125, 1.0)}
KB = 1024


@dataclass(frozen=True)
class Assumptions:
    """What the plan assumes rather than measures (each one is printed with the plan)."""

    impressions_per_day: float = 1e9  # counted: a post's first view by a viewer in a window
    peak_to_average: float = 3.0  # busiest second ÷ the day's mean (a diurnal curve: 2 to 3)
    window: int = 300  # IMPRESSIONS_DEDUP_WINDOW = IMPRESSIONS_FLUSH_DELAY, seconds
    page: int = 20  # posts a timeline call counts (first views: all of them)
    distinct_per_window: int = 3_000_000  # (post, day) pairs pending in a peak window (issue 19)
    reloads_to_redis: float = 0.25  # reload impressions that reach Redis, per counted one
    flush_share: float = 0.5  # a window's flush must end within this share of the window


@dataclass
class Measured:
    """Per-unit costs taken from this run; None where the run did not measure them."""

    redis_cpu_per_impression: float | None = None  # s, a first view, ours, Redis side
    redis_cpu_per_reload: float | None = None  # s, a reload impression that reaches Redis
    bytes_per_call: float | None = None  # request + reply of one record call
    simple_command_cpu: float | None = None  # s of Redis CPU for one 3-byte SET
    p99: float | None = None  # s, a record call at the most processes measured
    dedup_bytes: float | None = None  # per de-duplication entry
    pending_bytes: float | None = None  # per pending (post, day) counter
    flush_rates: dict = field(default_factory=dict)  # {K: pending posts flushed per second}
    # {K: database rows written per pending post}: a post pending in shards of several parts
    # is updated by each of them, so it grows with K.
    writes_per_post: dict = field(default_factory=dict)
    wal_bytes_per_post: dict = field(default_factory=dict)  # {K: WAL bytes per pending post}
    flush_redis_bytes_per_post: float | None = None
    sources: dict = field(default_factory=dict)  # what -> where in this run it comes from


@dataclass
class Line:
    what: str
    value: float | None
    text: str  # the value as shown
    formula: str


def plan(a, m):
    """[Line]: the plan's figures, in the order they build on each other."""
    lines = []

    def add(what, value, text, formula):
        lines.append(Line(what, value, text if value is not None else "not measured", formula))
        return value

    mean = a.impressions_per_day / DAY
    add("mean impressions/s", mean, format_rate(mean), "impressions a day ÷ 86,400")
    peak = add(
        "peak impressions/s",
        mean * a.peak_to_average,
        format_rate(mean * a.peak_to_average),
        f"mean * peak-to-average {a.peak_to_average:g}",
    )
    calls = add("peak record calls/s", peak / a.page, format_rate(peak / a.page), "peak ÷ page")
    reloads = peak * a.reloads_to_redis
    per_call = _times(m.redis_cpu_per_impression, a.page)
    cores = None
    if m.redis_cpu_per_impression is not None:
        cores = peak * m.redis_cpu_per_impression + reloads * (m.redis_cpu_per_reload or 0)
    add(
        "Redis CPU at peak (cores, all nodes)",
        cores,
        f"{cores:.2f}" if cores is not None else "",
        "peak * CPU per first view + peak * reload share * CPU per reload that reaches Redis",
    )
    ecpu_call = ecpus_per_call(per_call, m.bytes_per_call, m.simple_command_cpu)
    add(
        "ECPUs per record call",
        ecpu_call,
        f"{ecpu_call:.1f}" if ecpu_call is not None else "",
        "max(KB transferred, Redis CPU of the call ÷ Redis CPU of a 3-byte SET)",
    )
    reload_call = ecpus_per_call(
        _times(m.redis_cpu_per_reload, a.page), m.bytes_per_call, m.simple_command_cpu
    )
    flush_ecpus = None
    if m.flush_redis_bytes_per_post is not None:
        flush_ecpus = a.distinct_per_window * m.flush_redis_bytes_per_post / KB
    peak_ecpus = None
    if ecpu_call is not None:
        peak_ecpus = calls * ecpu_call + reloads / a.page * (reload_call or 0)
    add(
        "ECPUs/s at peak",
        peak_ecpus,
        format_rate(peak_ecpus) if peak_ecpus is not None else "",
        "record calls/s * ECPUs per call + reload calls/s * ECPUs per reload call",
    )
    day_ecpus = None
    if ecpu_call is not None:
        windows = DAY / a.window
        day_ecpus = (a.impressions_per_day / a.page) * (
            ecpu_call + a.reloads_to_redis * (reload_call or 0)
        ) + windows / a.peak_to_average * (flush_ecpus or 0)
    add(
        "ECPUs a day",
        day_ecpus,
        format_rate(day_ecpus) if day_ecpus is not None else "",
        "calls a day * ECPUs per call (reloads included) + windows a day * the flush's KB"
        " (a mean window holds distinct ÷ peak-to-average posts)",
    )
    dedup = _times(m.dedup_bytes, peak * a.window)
    add(
        "Redis memory, de-duplication at peak",
        dedup,
        format_size(dedup) if dedup is not None else "",
        "peak * window * bytes per de-dup entry",
    )
    pending = _times(m.pending_bytes, 2 * a.distinct_per_window)
    add(
        "Redis memory, pending counts at peak",
        pending,
        format_size(pending) if pending is not None else "",
        "2 * distinct per window * bytes per counter (a flush's snapshot beside the new window)",
    )
    stored = None
    if dedup is not None and pending is not None:
        stored = (dedup + pending / 2) / a.peak_to_average
    add(
        "data stored, day's mean (GB)",
        stored,
        f"{stored / 1e9:.2f}" if stored is not None else "",
        "(de-dup + one window's counters at peak) ÷ peak-to-average",
    )
    for engine, (per_million, per_gb_hour, minimum) in PRICES.items():
        cost = None
        if day_ecpus is not None and stored is not None:
            cost = day_ecpus / 1e6 * per_million + max(stored / 1e9, minimum) * 24 * per_gb_hour
        add(
            f"ElastiCache Serverless ({engine}), dollars a day",
            cost,
            f"{cost:.2f}" if cost is not None else "",
            f"ECPUs a day * ${per_million}/million + max(GB, {minimum:g}) * 24 * ${per_gb_hour}",
        )
    return lines + flush_lines(a, m)


def flush_lines(a, m):
    lines = []
    need = a.distinct_per_window / (a.window * a.flush_share)
    lines.append(
        Line(
            "flush rate needed (posts/s)",
            need,
            format_rate(need),
            f"distinct per window ÷ ({a.window} s * {a.flush_share:g})",
        )
    )
    for parts, rate in sorted(m.flush_rates.items()):
        seconds = a.distinct_per_window / rate
        fits = "fits" if seconds <= a.window * a.flush_share else "too slow"
        lines.append(
            Line(
                f"one peak window's flush at K={parts}",
                seconds,
                f"{seconds:.0f} s ({fits})",
                f"distinct per window ÷ measured {format_rate(rate)} posts/s",
            )
        )
    k = parts_needed(need, m.flush_rates)
    lines.append(
        Line(
            "K (IMPRESSIONS_FLUSH_PARTS) and workers",
            k,
            f"K={k}, {k + 1} workers" if k else "",
            "the smallest measured K fast enough (else the best K's rate per part, scaled);"
            " workers: K, and one for the roll-up and retries",
        )
    )
    messages = (k or 1) / a.window
    lines.append(
        Line(
            "SQS messages/s",
            messages,
            f"{messages:.3f} (K a window)",
            "K flush tasks a window ÷ window (+ a roll-up a day, retries); a worker's long poll"
            " is one ReceiveMessage per 20 s",
        )
    )
    at = measured_at(m.writes_per_post, k)
    writes = _times(m.writes_per_post.get(at), a.distinct_per_window)
    lines.append(
        Line(
            "database rows written a peak window",
            writes,
            format_rate(writes) if writes is not None else "not measured",
            f"distinct per window * rows written per pending post at K={at} (each part updates"
            " a post it holds: a post pending in shards of two parts is two UPDATEs)",
        )
    )
    if writes is not None and at in m.flush_rates:
        per_second = writes / (a.distinct_per_window / m.flush_rates[at])
        lines.append(
            Line(
                "database writes/s while a window flushes",
                per_second,
                format_rate(per_second),
                f"rows a window ÷ the flush's seconds at K={at}",
            )
        )
    wal = _times(m.wal_bytes_per_post.get(at), a.distinct_per_window / a.window)
    lines.append(
        Line(
            "WAL written, mean over a peak window",
            wal,
            f"{format_size(wal)}/s" if wal is not None else "not measured",
            f"distinct per window * WAL bytes per post at K={at} ÷ window",
        )
    )
    return lines


def ecpus_per_call(cpu, transferred, simple_cpu):
    """ElastiCache's rule: the larger of KB transferred and vCPU time in units of a simple
    command's; AWS does not publish the exact vCPU unit, so a 3-byte SET measured here is it."""
    if cpu is None or transferred is None or not simple_cpu:
        return None
    return max(transferred / KB, cpu / simple_cpu, 1.0)


def parts_needed(need, rates):
    """The smallest measured K whose rate reaches `need`; else the best measured rate per part
    times the K that would reach it (parts beyond the measured ones are an extrapolation)."""
    if not rates:
        return None
    for parts in sorted(rates):
        if rates[parts] >= need:
            return parts
    per_part = max(rate / parts for parts, rate in rates.items())
    return math.ceil(need / per_part)


def measured_at(by_parts, parts):
    """`parts` if measured, else the nearest measured K below it, else the smallest."""
    if not by_parts:
        return None
    below = [k for k in by_parts if parts is not None and k <= parts]
    return max(below) if below else min(by_parts)


def _times(value, factor):
    return None if value is None else value * factor


def render(a, m):
    assumptions = markdown_table(
        ["assumption", "value"],
        [
            ["counted impressions a day", f"{a.impressions_per_day:,.0f}"],
            ["peak-to-average (busiest second ÷ mean)", f"{a.peak_to_average:g}"],
            ["window (de-dup = flush delay)", f"{a.window} s"],
            ["posts counted per record call", str(a.page)],
            ["distinct (post, day) pending in a peak window", f"{a.distinct_per_window:,}"],
            ["reload impressions reaching Redis per counted one", f"{a.reloads_to_redis:g}"],
            ["a flush ends within", f"{a.flush_share:g} of the window"],
        ],
    )
    measured = markdown_table(
        ["measured in this run", "value", "from"],
        [[what, text, m.sources.get(what, "")] for what, text in measured_rows(m)],
    )
    lines = markdown_table(
        ["figure", "value", "formula"], [[x.what, x.text, x.formula] for x in plan(a, m)]
    )
    return f"{assumptions}\n\n{measured}\n\n{lines}\n"


def by_k(values, text):
    return ", ".join(f"K={k}: {text(v)}" for k, v in sorted(values.items())) or "-"


def measured_rows(m):
    def seconds(value, scale=1e6, unit="µs"):
        return f"{value * scale:.2f} {unit}" if value is not None else "not measured"

    return [
        ("Redis CPU per first view", seconds(m.redis_cpu_per_impression)),
        ("Redis CPU per reload reaching Redis", seconds(m.redis_cpu_per_reload)),
        ("bytes per record call", format_bytes(m.bytes_per_call) if m.bytes_per_call else "-"),
        ("Redis CPU per 3-byte SET", seconds(m.simple_command_cpu)),
        ("record call p99 at the most processes", seconds(m.p99, 1e3, "ms")),
        ("bytes per de-dup entry", format_bytes(m.dedup_bytes) if m.dedup_bytes else "-"),
        ("bytes per pending counter", format_bytes(m.pending_bytes) if m.pending_bytes else "-"),
        ("flush posts/s by K", by_k(m.flush_rates, format_rate)),
        ("rows written per pending post", by_k(m.writes_per_post, lambda v: f"{v:.2f}")),
        ("WAL per pending post", by_k(m.wal_bytes_per_post, format_bytes)),
        (
            "flush's Redis bytes per pending post",
            format_bytes(m.flush_redis_bytes_per_post) if m.flush_redis_bytes_per_post else "-",
        ),
    ]


def measured(load=None, memory=None, flush_runs=None, window_runs=None):
    """Measured from the figures of this run's sections (None: the section did not run).

    The cluster's figures where measured (ElastiCache Serverless is a cluster), else the
    standalone's; the window run's at scale over the capacity section's smaller flushes.
    """
    m = Measured()
    load = load or {}
    name = "3-node cluster" if "3-node cluster" in load else "standalone"
    if name in load:
        f = load[name]
        where = f"1b, {name}, scrolls, {f['most_processes']} processes"
        m.redis_cpu_per_impression = f["cpu_per_impression"]
        m.redis_cpu_per_reload = f["reload_raw_cpu_per_impression"]
        m.bytes_per_call = f["bytes_per_call"]
        m.simple_command_cpu = f["simple_command_cpu"]
        m.p99 = f["p99"]
        for what in (
            "Redis CPU per first view",
            "Redis CPU per reload reaching Redis",
            "bytes per record call",
            "record call p99 at the most processes",
        ):
            m.sources[what] = where
        m.sources["Redis CPU per reload reaching Redis"] = (
            f"1b, {name}, {f['most_processes']} processes, raw's reloads"
        )
        m.sources["Redis CPU per 3-byte SET"] = f"1b, {name}, redis-benchmark SET"
    if memory:
        m.dedup_bytes = memory["dedup_bytes"]
        m.pending_bytes = memory["pending_bytes"]
        m.sources["bytes per de-dup entry"] = "4, INFO used_memory delta"
        m.sources["bytes per pending counter"] = "4, INFO used_memory delta"
    for runs, where in ((flush_runs, "9, a smaller window"), (window_runs, "8, the window run")):
        if not runs:
            continue
        m.flush_rates = {k: f["rows_per_second"] for k, f in runs.items()}
        one = next(iter(runs.values()))
        m.writes_per_post = {k: f["writes_per_post"] for k, f in runs.items()}
        m.wal_bytes_per_post = {k: f["wal_bytes_per_post"] for k, f in runs.items()}
        m.flush_redis_bytes_per_post = one["redis_flush_bytes_per_post"]
        size = f"{one['posts']:,} posts"
        for what in (
            "flush posts/s by K",
            "rows written per pending post",
            "WAL per pending post",
            "flush's Redis bytes per pending post",
        ):
            m.sources[what] = f"{where} ({size})"
        if where.startswith("8"):
            m.pending_bytes = one["redis_bytes_per_post"]
            m.sources["bytes per pending counter"] = f"8, used_memory delta at {size}"
    return m


def headlines(a, m):
    found = {line.what: line.text for line in plan(a, m)}
    writes = found.get("database writes/s while a window flushes", "not measured")
    return [
        f"Capacity plan for {a.impressions_per_day:,.0f} counted impressions a day (peak"
        f" {a.peak_to_average:g}x the mean): **{found['peak impressions/s']} impressions/s** at"
        f" peak; Redis {found['Redis CPU at peak (cores, all nodes)']} cores,"
        f" {found['ECPUs/s at peak']} ECPUs/s ({found['ECPUs per record call']} a call);"
        f" memory {found['Redis memory, de-duplication at peak']} de-dup +"
        f" {found['Redis memory, pending counts at peak']} pending; flush"
        f" {found['K (IMPRESSIONS_FLUSH_PARTS) and workers']}, {writes} rows/s written while it"
        " runs (section 9)."
    ]
