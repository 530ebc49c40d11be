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


def render(doc: dict[str, Any]) -> str:
    """Machine, scenario, one table and the targets per backend, and how to reproduce."""
    machine = doc["machine"]
    settings = doc["settings"]
    scenario = settings["scenario"]
    lines = [
        f"Measured {doc['generated_at']} on {machine['cpu_count']} CPUs ({machine['cpu_model']}),"
        f" {machine['memory_gb']} GB RAM, {machine['platform']}, Python {machine['python']},"
        f" mlflow {machine['mlflow']} (`mlflow server`, one uvicorn worker); whole run"
        f" {doc['wall_seconds']:.0f} s. Scenario: {scenario['experiments']} experiments x"
        f" {scenario['old']:,} traces older than the cutoff + {scenario['new']:,} newer ones that"
        f" must survive; engine latency target {settings['target_latency']:g} s.",
        "",
        f"Reproduce: `{doc['command'].strip()}` (or `make bench`).",
        "",
    ]
    for section in doc["backends"]:
        server = section["server"]
        lines += [
            f"#### {section['backend']}"
            + (
                f" (PostgreSQL {server['postgres_version']})"
                if "postgres_version" in server
                else ""
            ),
            "",
            "| variant | traces/s | x docs recipe | x unbounded | probe p50 / p99 / max (ms)"
            " | probe errors | verified |",
            "|---|---:|---:|---:|---:|---:|:---:|",
        ]
        idle = section["idle_probe"].get("all")
        if idle:
            lines.append(
                f"| *(idle server, no cleanup)* | | | | {_ms(idle['p50_s'])} / {_ms(idle['p99_s'])}"
                f" / {_ms(idle['max_s'])} | {idle['errors']} | |"
            )
        for variant in section["variants"]:
            probe = variant["probe"].get("all", {})
            name = variant["name"] + (" (t)" if variant["time_boxed"] else "")
            if variant["status"] == "failed":
                name += " (failed)"
            lines.append(
                f"| {name} | {_rate(variant['throughput_per_s'])}"
                f" | {_x(variant['ratio_vs_docs_recipe'])} | {_x(variant['ratio_vs_unbounded'])}"
                f" | {_ms(probe.get('p50_s'))} / {_ms(probe.get('p99_s'))}"
                f" / {_ms(probe.get('max_s'))}"
                f" | {probe.get('errors', 0) + probe.get('skipped', 0)}"
                f" | {'yes' if variant['verification']['verified'] else 'NO'} |"
            )
        lines += ["", "| target | measured | threshold | verdict |", "|---|---:|---:|---|"]
        for check in section["targets"]:
            value = "-" if check["value"] is None else f"{check['value']:.2f}"
            detail = f" ({check['detail']})" if check["detail"] else ""
            lines.append(
                f"| {check['name']}{detail} | {value} | {check['threshold']}"
                f" | {VERDICTS[check['met']]} |"
            )
        lines.append("")
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
