"""The results as Markdown, ready for the README's "Performance" section.

`python -m benchmarks.markdown benchmarks/results/default.json` prints it again from a JSON file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

VERDICTS = {True: "met", False: "**missed**", None: "n/a"}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.0f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _probe_cells(probe: dict[str, Any]) -> str:
    """Read p50 / p99, write p50 / p99, ticks sent, stalled, errors."""
    read = probe.get("read", {})
    write = probe.get("write", {})
    every = probe.get("all", {})
    return (
        f"{_ms(read.get('p50_s'))} / {_ms(read.get('p99_s'))}"
        f" | {_ms(write.get('p50_s'))} / {_ms(write.get('p99_s'))}"
        f" | {_ms(every.get('p99_s'))}"
        f" | {every.get('sent', 0)} | {every.get('stalled', 0)} | {every.get('errors', 0)}"
    )


TABLE_HEAD = [
    "| variant | traces/s | x docs recipe | x unbounded | read p50 / p99 (ms) | write p50 / p99"
    " (ms) | p99 all (ms) | sent | stalled | errors | verified |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
]
COLUMNS_NOTE = (
    "Columns: read / write p50 / p99 are the probe's searches and trace writes (one every 50 ms, "
    "alternating), stalled ticks included; p99 all is both together, the foreground p99 the "
    "frontier and the targets use; sent = probe requests sent; stalled = ticks not sent because "
    "8 requests were outstanding, counted in the percentiles with the time until a slot freed "
    "(a lower bound of their wait); errors = sent requests answered non-200 or lost."
)


def _server_label(server: dict[str, Any]) -> str:
    for key, label in (("postgres_version", "PostgreSQL "), ("mysql_version", "")):
        if key in server:
            return f" ({label}{server[key]}, {server.get('workers', '?')} workers)"
    return f" ({server['workers']} workers)" if "workers" in server else ""


def _section(section: dict[str, Any]) -> list[str]:
    lines = [f"#### {section['backend']}{_server_label(section['server'])}", ""]
    if section.get("unavailable"):
        return [*lines, f"Not measured: {section['unavailable']}", ""]
    lines += TABLE_HEAD
    idle = section["idle_probe"]
    if idle:
        lines.append(f"| *(idle server, no cleanup)* | | | | {_probe_cells(idle)} | |")
    for variant in section["variants"]:
        name = variant["name"] + (" (t)" if variant["time_boxed"] else "")
        if variant["status"] == "failed":
            name += " (failed)"
        lines.append(
            f"| {name} | {_rate(variant['throughput_per_s'])}"
            f" | {_x(variant['ratio_vs_docs_recipe'])} | {_x(variant['ratio_vs_unbounded'])}"
            f" | {_probe_cells(variant['probe'])}"
            f" | {'yes' if variant['verification']['verified'] else 'NO'} |"
        )
    frontier = ", ".join(
        f"{point['name']} ({_rate(point['throughput_per_s'])}/s at {_ms(point['p99_s'])} ms)"
        for point in section.get("frontier", [])
    )
    lines += ["", f"Frontier (fixed loops no other loop beats): {frontier or 'none'}."]
    lines += ["", "| target | measured | threshold | verdict |", "|---|---:|---:|---|"]
    for check in section["targets"]:
        value = "-" if check["value"] is None else f"{check['value']:.2f}"
        detail = f" ({check['detail']})" if check["detail"] else ""
        lines.append(
            f"| {check['name']}{detail} | {value} | {check['threshold']}"
            f" | {VERDICTS[check['met']]} |"
        )
    return [*lines, ""]


def render(doc: dict[str, Any]) -> str:
    """Machine, scenario, one table and the targets per backend, and how to reproduce."""
    machine = doc["machine"]
    settings = doc["settings"]
    scenario = settings["scenario"]
    lines = [
        f"Measured {doc['generated_at']} on {machine['cpu_count']} CPUs ({machine['cpu_model']}),"
        f" {machine['memory_gb']} GB RAM, {machine['platform']}, Python {machine['python']},"
        f" mlflow {machine['mlflow']} (`mlflow server`, {settings.get('workers', 1)} uvicorn"
        f" workers); whole run {doc['wall_seconds']:.0f} s. Scenario:"
        f" {scenario['experiments']} experiments x {scenario['old']:,} traces older than the"
        f" cutoff + {scenario['new']:,} newer ones that must survive, each with its spans and"
        f" some with an assessment; engine default target {settings['target_latency']:g} s,"
        f" foreground budget {settings.get('foreground_budget', 0):g} s.",
        "",
        f"Reproduce: `{doc['command'].strip()}` (or `make bench`).",
        "",
        COLUMNS_NOTE,
        "",
    ]
    for section in doc["backends"]:
        lines += _section(section)
    lines += [
        "(t) time-boxed: rate measured over the time box; (see the JSON for the error).",
        "",
        *[f"- {note}" for note in doc["notes"]],
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the Markdown of a results JSON file."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m benchmarks.markdown RESULTS.json", file=sys.stderr)
        return 2
    print(render(json.loads(Path(args[0]).read_text(encoding="utf-8"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
