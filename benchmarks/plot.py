"""The PNG: per backend, the frontier of fixed loops and where the engine lands beside it.

x: foreground p99 (reads and writes, stalled ticks included), log scale; y: traces deleted per
second. Grey dots are the fixed (batch x pause) loops, the line their Pareto frontier; the
engine at each latency target, the budget-paced engine, the hand-written 1,000 / 0.1 s loop,
the docs recipe and the unbounded call are marked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MARKED = {
    "engine-0.25s": ("#c44e52", "o"),
    "engine": ("#dd8452", "o"),
    "engine-5s": ("#8c564b", "o"),
    "engine-budget": ("#2ca02c", "*"),
    "engine-concurrent": ("#9467bd", "D"),
    "fixed-1000-sleep-0.1": ("#1f77b4", "s"),
    "docs-recipe": ("#7f7f7f", "v"),
    "unbounded": ("#000000", "^"),
}


def _p99(variant: dict[str, Any]) -> float | None:
    value = variant.get("probe", {}).get("all", {}).get("p99_s")
    return None if value is None else float(value)


def write_plot(doc: dict[str, Any], path: Path) -> None:
    """Draw one frontier panel per measured backend of the document into `path` (Agg)."""
    import matplotlib  # optional `[bench]` dependency, imported only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    sections = [s for s in doc["backends"] if s["variants"]]
    columns = max(len(sections), 1)
    figure, axes = plt.subplots(1, columns, figsize=(6.5 * columns, 5.5), squeeze=False)
    budget = doc["settings"].get("foreground_budget")
    for axis, section in zip(axes[0], sections, strict=False):
        main = [v for v in section["variants"] if v["scenario"] == "main"]
        grid = [v for v in main if v["name"].startswith("fixed-") and _p99(v) is not None]
        axis.scatter(
            [_p99(v) for v in grid],
            [v["throughput_per_s"] or 0.0 for v in grid],
            color="#bbbbbb",
            s=18,
            label="fixed loops (batch x pause)",
        )
        frontier = section.get("frontier", [])
        if frontier:
            axis.plot(
                [p["p99_s"] for p in frontier],
                [p["throughput_per_s"] for p in frontier],
                color="#555555",
                linewidth=1.5,
                label="frontier",
            )
        for variant in main:
            style = MARKED.get(variant["name"])
            value = _p99(variant)
            if style is None or value is None:
                continue
            color, marker = style
            axis.scatter(
                [value],
                [variant["throughput_per_s"] or 0.0],
                color=color,
                marker=marker,
                s=70,
                zorder=3,
                label=variant["name"],
            )
        if budget:
            axis.axvline(budget, color="red", linestyle="--", linewidth=1, label="budget")
        axis.set_xscale("log")
        axis.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on short spans
        axis.set_xlabel("foreground p99 (s), reads + writes, stalls included")
        axis.set_ylabel("traces deleted / s")
        axis.set_title(f"{section['backend']}: throughput vs what other clients feel")
        axis.legend(fontsize="small")
    machine = doc["machine"]
    figure.suptitle(
        f"async-trace-delete benchmark ({doc['mode']}): {machine['cpu_count']} CPUs,"
        f" mlflow {machine['mlflow']}, {doc['settings'].get('workers', 1)} workers,"
        f" Python {machine['python']}"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
