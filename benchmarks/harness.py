"""Interleaved contenders, medians, percentiles, ratios to ours and markdown tables.

Standard library only, no Django: tests/test_bench_harness.py checks the arithmetic.
"""

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

OURS, BASELINE, LIMIT = "ours", "baseline", "raw limit"


class ContenderFailed(Exception):
    """A contender could not run; the table shows the message instead of a number."""


@dataclass
class Measurement:
    """One round of one contender: `units` (rows, impressions, requests) done in `seconds`."""

    seconds: float
    units: int
    # Per-operation latencies in seconds (per request, for example), pooled over rounds.
    samples: list[float] = field(default_factory=list)
    # When a slow contender ran only part of the work, the units it really ran; `seconds` is then
    # scaled linearly to `units` and the table says so.
    measured_units: int | None = None
    # Server-side counts over the round (the flush's WAL bytes, ...), when a benchmark takes them.
    counters: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self):
        return self.units / self.seconds if self.seconds > 0 else math.inf


@dataclass
class Contender:
    name: str
    run: Callable[[], Measurement]
    kind: str = BASELINE
    # Untimed work before each round (reset Redis, vacuum the table, ...).
    prepare: Callable[[], None] | None = None
    note: str = ""


@dataclass
class Result:
    contender: Contender
    measurements: list[Measurement] = field(default_factory=list)
    error: str | None = None

    @property
    def name(self):
        return self.contender.name

    @property
    def ok(self):
        return self.error is None and bool(self.measurements)

    @property
    def median_seconds(self):
        return median([m.seconds for m in self.measurements])

    @property
    def median_rate(self):
        return median([m.rate for m in self.measurements])

    @property
    def samples(self):
        return [s for m in self.measurements for s in m.samples]

    @property
    def extrapolated_from(self):
        """The largest partial run when any round was extrapolated, else None."""
        partial = [m.measured_units for m in self.measurements if m.measured_units is not None]
        return max(partial) if partial else None


def median(values):
    return statistics.median(values) if values else math.nan


def percentile(values, q):
    """The q-th percentile (0-100) with linear interpolation between ranks, like numpy's default."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ratio(value, reference):
    """value / reference, NaN when either is missing or the reference is zero."""
    if value is None or reference is None or reference == 0:
        return math.nan
    if math.isnan(value) or math.isnan(reference):
        return math.nan
    return value / reference


def paired_ratios(numerators, denominators):
    """Round by round a / b of two contenders measured in the same rounds (NaN where b is 0)."""
    return [ratio(a, b) for a, b in zip(numerators, denominators, strict=True)]


@dataclass(frozen=True)
class Spread:
    """The median of some values and their range (min to max), NaN-free values only."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values):
        kept = [v for v in values if v is not None and not math.isnan(v)]
        if not kept:
            return cls(math.nan, math.nan, math.nan)
        return cls(median(kept), min(kept), max(kept))

    def meets(self, goal):
        """True when the median reaches `goal` (the range is reported beside it, not judged)."""
        return not math.isnan(self.median) and self.median >= goal

    def text(self, digits=2):
        if math.isnan(self.median):
            return "n/a"
        return f"{self.median:.{digits}f} ({self.low:.{digits}f} to {self.high:.{digits}f})"


def timed(function, *args, **kwargs):
    """(seconds, result) of one call on the monotonic high-resolution clock."""
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def run_interleaved(contenders, rounds, log=print):
    """Run every contender once per round, rotating the order (A B C, B C A, ...), so drift on a
    shared machine spreads over all of them instead of landing on one."""
    results = {contender.name: Result(contender) for contender in contenders}
    for round_number in range(rounds):
        shift = round_number % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            run_round(results[contender.name], round_number, log)
    return list(results.values())


def run_round(result, round_number, log=print):
    """One round of `result`'s contender, added to it; returns the Measurement, or None when the
    contender failed (now or in an earlier round: it would fail the same way again). A failure
    is recorded in the result, not raised, so one broken contender never ends a whole run."""
    contender = result.contender
    if result.error:
        return None
    try:
        if contender.prepare:
            contender.prepare()
        measurement = contender.run()
    except ContenderFailed as error:
        result.error = str(error)
        log(f"  round {round_number + 1}: {contender.name}: FAILED: {error}")
        return None
    result.measurements.append(measurement)
    log(
        f"  round {round_number + 1}: {contender.name}: {measurement.seconds:.3f} s,"
        f" {format_rate(measurement.rate)}/s"
    )
    return measurement


def ours_of(results):
    """The first successful result of kind OURS, or None."""
    return next((r for r in results if r.contender.kind == OURS and r.ok), None)


def format_rate(value):
    if value is None or math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf"
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def format_seconds(value):
    if value is None or math.isnan(value):
        return "n/a"
    if value >= 1:
        return f"{value:.3g} s"
    if value >= 1e-3:
        return f"{value * 1e3:.3g} ms"
    return f"{value * 1e6:.3g} µs"


def format_ratio(value):
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.3g}×"  # noqa: RUF001  (the multiplication sign is meant)


def format_bytes(value):
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:,.0f} B"


def format_size(value):
    """A large byte count in decimal units: 333 MB, 1.2 GB."""
    if value is None or math.isnan(value):
        return "n/a"
    for limit, suffix in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if abs(value) >= limit:
            return f"{value / limit:.3g} {suffix}"
    return f"{value:.0f} B"


def markdown_table(headers, rows):
    """A GitHub markdown table; numbers are expected already formatted as strings."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(str(h)), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]

    def line(values):
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    return "\n".join(
        [line([str(h) for h in headers]), line(["-" * w for w in widths])]
        + [line(row) for row in cells]
    )
