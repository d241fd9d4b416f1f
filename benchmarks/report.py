"""benchmarks/results/latest.md and the flush-scaling chart."""

import math
from dataclasses import dataclass, field

from .harness import LIMIT, OURS, markdown_table


@dataclass
class Section:
    title: str
    intro: str
    body: str
    notes: list[str] = field(default_factory=list)

    def markdown(self):
        notes = "".join(f"\n- {note}" for note in self.notes)
        intro = f"{self.intro}\n\n" if self.intro else ""
        return f"## {self.title}\n\n{intro}{self.body}\n{notes}\n"


def write_markdown(path, machine_rows, command, headlines, sections, chart_name=None):
    parts = [
        "# Benchmark results\n",
        "Written by `make bench` (`python -m benchmarks`); do not edit by hand. Contenders run"
        " interleaved in the same process (A B C, B C A, …) for several rounds; times are medians."
        " The machine is shared (other jobs ran on the same cores), so **the ratios are the"
        " result**, absolute times are only indicative.\n",
        f"Command: `{command}`\n",
        "## Machine\n\n" + markdown_table(["what", "value"], machine_rows) + "\n",
    ]
    if headlines:
        parts.append("## Headlines\n\n" + "\n".join(f"- {line}" for line in headlines) + "\n")
    parts.extend(section.markdown() for section in sections)
    if chart_name:
        parts.append(f"## Flush scaling chart\n\n![flush scaling]({chart_name})\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))


def flush_chart(path, by_size):
    """Rows/s against pending posts (log x, log y); hollow markers for extrapolated points."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(12, 5.5), dpi=110)
    names = [r.name for r in next(iter(by_size.values()), [])]
    for name in names:
        points = []
        for size, results in by_size.items():
            result = next(r for r in results if r.name == name)
            if result.ok and not math.isinf(result.median_rate):
                points.append((size, result.median_rate, bool(result.extrapolated_from)))
        if not points:
            continue
        kind = next(r.contender.kind for r in by_size[points[0][0]] if r.name == name)
        style = {OURS: "-", LIMIT: ":"}.get(kind, "--")
        width = 2.8 if kind == OURS else 1.6
        (line,) = axes.plot(
            [p[0] for p in points], [p[1] for p in points], style, linewidth=width, label=name
        )
        for size, rate, extrapolated in points:
            axes.plot(
                size,
                rate,
                "o",
                color=line.get_color(),
                markerfacecolor="white" if extrapolated else line.get_color(),
                markersize=7,
            )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("distinct pending posts flushed (log)")
    axes.set_ylabel("rows per second (log, higher is better)")
    axes.set_title("Flush throughput vs size (table of ≥ 1M posts, PostgreSQL)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.01, 1),  # beside the plot, never over a line
        title="hollow marker = extrapolated",
        title_fontsize=8,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    pyplot.close(figure)
