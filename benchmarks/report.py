"""Render a run: the stdout table, the targets, and the JSON document with every raw figure."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.probe import LatencySummary
from benchmarks.runner import Settings, VariantResult
from benchmarks.targets import TargetCheck, mean_in_flight
from benchmarks.variants import peak_in_flight

SEEDING_NOTE = (
    "Seeding bypasses MLflow's API (~50-200 traces/s): once the server has created the schema, "
    "rows are bulk-inserted into trace_info, trace_tags, trace_request_metadata, spans and "
    "assessments (sqlite3 / pymysql executemany, psycopg2 COPY) and copied once where the "
    "server never reads them; before each variant exactly the missing traces are restored from "
    "that copy (set-based INSERT ... SELECT; SQLite: the whole file written back), so every "
    "variant starts from identical rows."
)
TIME_BOX_NOTE = (
    "Time-boxed variants (docs recipe, fixed loops) stop sending calls after the time box "
    "(the call in flight completes); their rate is deleted/elapsed within the box, pauses "
    "included, a steady rate since every call costs the same. Verified: new traces all kept, "
    "counts exact, and exactly the oldest old traces gone."
)
ENGINE_BOX_NOTE = (
    " The engine below the large target, engine-budget and the hand-written loop it is "
    "compared with (fixed-1000-sleep-0.1) are time-boxed at {engine:g} s, "
    "engine-concurrent at {concurrent:g} s, ended with Engine.stop_all(), which lets the calls "
    "in flight finish: the engine settles within a few calls and then runs at a steady rate "
    "(on PostgreSQL it usually finishes first). The engine at the large target runs to the end "
    "(a whole cleanup, tail calls included)."
)
CLEAN_REST_NOTE = (
    " With --clean-rest the rest is then deleted untimed (sequential calls of 20,000) and "
    "'old all gone' is checked too."
)


API_SEEDING_NOTE = (
    "User-given server: with --seed, experiments are created and seeded through the REST API "
    "(~50-200 traces/s) and verified by search; without it, only the idle probe runs."
)


def seeding_note(settings: Settings) -> str:
    """How this run seeds its data."""
    return API_SEEDING_NOTE if settings.tracking_uri else SEEDING_NOTE


def time_box_note(settings: Settings) -> str:
    """How time-boxed variants are measured and verified in this run."""
    boxed = settings.engine_box > 0 or settings.concurrent_box > 0
    engine_boxes = (
        ENGINE_BOX_NOTE.format(engine=settings.engine_box, concurrent=settings.concurrent_box)
        if boxed
        else ""
    )
    return TIME_BOX_NOTE + engine_boxes + (CLEAN_REST_NOTE if settings.clean_rest else "")


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": _memory_gb(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }
    for package in ("mlflow", "async-trace-delete", "httpx", "psycopg2-binary", "pymysql"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = None
    return info


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        return None
    return None


def _reference(results: list[VariantResult], name: str) -> float | None:
    for result in results:
        if result.name == name and result.scenario == "main":
            return result.throughput
    return None


def variant_json(
    result: VariantResult, docs: float | None, unbounded: float | None
) -> dict[str, Any]:
    """Every figure of one variant, the raw calls included."""
    throughput = result.throughput
    return {
        "name": result.name,
        "description": result.description,
        "scenario": result.scenario,
        "status": result.status,
        "time_boxed": result.run.time_boxed,
        "elapsed_s": round(result.run.elapsed, 3),
        "deleted_measured": result.measured_deleted,
        "deleted_reported": result.run.deleted,
        "throughput_per_s": None if throughput is None else round(throughput, 1),
        "ratio_vs_docs_recipe": _round(_divide(throughput, docs)),
        "ratio_vs_unbounded": _round(_divide(throughput, unbounded)),
        "probe": {kind: summary.as_json() for kind, summary in result.probe.items()},
        "probe_window_s": round(result.probe_window, 2),
        "errors": result.run.errors,
        "verification": {
            "verified": result.verified,
            "old_before": result.old_before,
            "old_after": result.old_after,
            "old_after_cleanup": result.old_after_cleanup,
            "new_before": result.new_before,
            "new_after": result.new_after,
            "new_kept": result.new_kept,
            "old_gone": result.old_gone,
            "count_consistent": result.count_consistent,
            "orphan_child_rows": result.orphans,
            "deleted_oldest_first": result.oldest_first,
        },
        "cleanup_untimed_s": _round(result.cleanup_seconds),
        "calls": len(result.run.calls),
        "mean_calls_in_flight": _round(mean_in_flight(result)),
        "peak_calls_in_flight": peak_in_flight(result.run.calls) if result.run.calls else 0,
        "note": result.note,
        "details": result.run.details,
        "call_log": [call.as_json() for call in result.run.calls],
    }


def _divide(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def backend_json(
    name: str,
    info: dict[str, Any],
    idle: dict[str, LatencySummary],
    results: list[VariantResult],
    checks: list[TargetCheck],
    seed_log: list[dict[str, Any]],
) -> dict[str, Any]:
    """One backend's section of the document."""
    docs = _reference(results, "docs-recipe")
    unbounded = _reference(results, "unbounded")
    return {
        "backend": name,
        "server": info,
        "idle_probe": {kind: summary.as_json() for kind, summary in idle.items()},
        "seeding": seed_log,
        "variants": [variant_json(result, docs, unbounded) for result in results],
        "targets": [check.as_json() for check in checks],
    }


def document(settings: Settings, backends: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    """The whole results document."""
    settings_json = asdict(settings)
    settings_json["output"] = str(settings.output)
    settings_json["grid"] = [list(point) for point in settings.grid]
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks " + " ".join(sys.argv[1:]),
        "mode": settings.mode,
        "wall_seconds": round(wall, 1),
        "machine": machine_info(),
        "settings": settings_json,
        "notes": [seeding_note(settings), time_box_note(settings)],
        "backends": backends,
    }


def write_json(doc: dict[str, Any], path: Path) -> None:
    """Write the document, creating the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.0f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _probe_text(probe: dict[str, Any]) -> str:
    read = probe.get("read", {})
    write = probe.get("write", {})
    every = probe.get("all", {})
    return (
        f" {_ms(read.get('p99_s')):>7} {_ms(write.get('p99_s')):>7} {_ms(every.get('p99_s')):>7}"
        f" {every.get('stalled', 0):>7} {every.get('errors', 0):>6}"
    )


def table(section: dict[str, Any]) -> str:
    """The per-backend table printed to stdout (p99s in ms, stalled ticks counted in them)."""
    header = (
        f"{'variant':<22} {'status':<10} {'deleted':>9} {'time s':>7} {'traces/s':>9}"
        f" {'x docs':>7} {'x unb.':>6} {'rd p99':>7} {'wr p99':>7} {'all p99':>7}"
        f" {'stalled':>7} {'p.err':>6} {'errors':>6} {'verified':>8}"
    )
    lines = [header, "-" * len(header)]
    idle = section["idle_probe"]
    if idle:
        lines.append(
            f"{'(idle, no cleanup)':<22} {'':<10} {'':>9} {'':>7} {'':>9} {'':>7} {'':>6}"
            + _probe_text(idle)
        )
    for variant in section["variants"]:
        rate = variant["throughput_per_s"]
        lines.append(
            f"{variant['name']:<22} {variant['status']:<10} {variant['deleted_measured']:>9,}"
            f" {variant['elapsed_s']:>7.1f} {'-' if rate is None else f'{rate:,.0f}':>9}"
            f" {_x(variant['ratio_vs_docs_recipe']):>7} {_x(variant['ratio_vs_unbounded']):>6}"
            + _probe_text(variant["probe"])
            + f" {len(variant['errors']):>6} {variant['verification']['verified']!s:>8}"
        )
    return "\n".join(lines)


def targets_text(section: dict[str, Any]) -> str:
    """The targets of the issue, with MET / MISSED / n/a."""
    lines = []
    for check in section["targets"]:
        verdict = {True: "MET", False: "MISSED", None: "n/a"}[check["met"]]
        value = "-" if check["value"] is None else f"{check['value']:.2f}"
        detail = f"  ({check['detail']})" if check["detail"] else ""
        lines.append(f"  [{verdict:^6}] {check['name']}: {value} {check['threshold']}{detail}")
    return "\n".join(lines)
