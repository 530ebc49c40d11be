"""The PNG: throughput per variant, probe p99 per variant, and the adaptive batch trajectory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

BACKEND_COLORS = {"sqlite": "#4c72b0", "postgres": "#dd8452", "external": "#55a868"}


def write_plot(doc: dict[str, Any], path: Path) -> None:
    """Draw the three panels for every backend of the document into `path` (Agg backend)."""
    import matplotlib  # optional `[bench]` dependency, imported only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    sections = doc["backends"]
    figure, axes = plt.subplots(3, 1, figsize=(12, 14))
    throughput_axis, p99_axis, trajectory_axis = axes
    names: list[str] = []
    for section in sections:
        for variant in section["variants"]:
            label = variant["name"]
            if label not in names:
                names.append(label)
    width = 0.8 / max(len(sections), 1)
    legend_handles: list[Any] = []
    for offset, section in enumerate(sections):
        color = BACKEND_COLORS.get(section["backend"], "#8172b2")
        by_name = {v["name"]: v for v in section["variants"]}
        xs = [i + offset * width for i in range(len(names))]
        rates = [(by_name.get(n) or {}).get("throughput_per_s") or 0.0 for n in names]
        p99s = [
            ((by_name.get(n) or {}).get("probe", {}).get("all", {}).get("p99_s") or 0.0)
            for n in names
        ]
        hatches = ["//" if (by_name.get(n) or {}).get("time_boxed") else "" for n in names]
        for x, rate, p99, hatch in zip(xs, rates, p99s, hatches, strict=True):
            throughput_axis.bar(x, rate, width, color=color, hatch=hatch)
            p99_axis.bar(x, p99, width, color=color, hatch=hatch)
        legend_handles.append(Patch(color=color, label=section["backend"]))
        for variant in section["variants"]:
            if not variant["name"].startswith("engine") or not variant["call_log"]:
                continue
            calls = variant["call_log"]
            trajectory_axis.step(
                [c["started_at"] for c in calls],
                [c["requested"] for c in calls],
                where="post",
                label=f"{section['backend']} {variant['name']}",
            )
    ticks = [i + width * (len(sections) - 1) / 2 for i in range(len(names))]
    for axis in (throughput_axis, p99_axis):
        axis.set_xticks(ticks)
        axis.set_xticklabels(names, rotation=30, ha="right")
    throughput_axis.set_ylabel("traces deleted / s")
    throughput_axis.set_title("Throughput per variant (hatched: time-boxed, steady rate)")
    throughput_axis.legend(handles=legend_handles)
    target = doc["settings"]["target_latency"]
    p99_axis.axhline(1.5 * target, color="red", linestyle="--", label=f"budget 1.5 x {target:g} s")
    p99_axis.set_ylabel("probe p99 latency (s)")
    p99_axis.set_title(
        "What other users pay: probe p99 (a read or a trace write every 50 ms, alternating)"
    )
    p99_axis.legend()
    trajectory_axis.set_yscale("log")
    trajectory_axis.set_xlabel("seconds since the variant started")
    trajectory_axis.set_ylabel("max_traces requested")
    trajectory_axis.set_title("Batch-size trajectory of the engine runs")
    trajectory_axis.legend(fontsize="small")
    machine = doc["machine"]
    figure.suptitle(
        f"async-trace-delete benchmark ({doc['mode']}): {machine['cpu_count']} CPUs,"
        f" mlflow {machine['mlflow']}, Python {machine['python']}"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
