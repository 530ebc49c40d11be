"""Counting and starting at backfill scale, side by side in one run (issue 13).

On each backend (a local `mlflow server` on SQLite, and on PostgreSQL), 4 experiments x
250,000 traces older than the cutoff (1,000,000) and 1,000 newer ones each are seeded by bulk
SQL insert, and three things are measured:

1. **the dry run**: `async-trace-delete delete ... --json` (a fresh process, end to end), and
   `Engine.plan` in process; both checked exact against the database;
2. **time to the first confirmed delete** of `--execute` (from spawning the process to the
   first `batch` line of its audit log), then the run is interrupted (SIGINT) and the rows
   restored;
3. **the CLI's `--execute` rate against `Engine.run`** on the same data: each job capped at
   25,000 traces (100,000 deleted per run), the CLI end to end (process start, plan, run) and
   `Engine.run` in process; restored between the two.

Reproduce: `python -m benchmarks.counting` (or `make bench-counts`); the figures go to
`benchmarks/results/counting.json` and `.md`. The machine is shared: compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from async_trace_delete import ClientConfig, DeleteSpec, Engine, EngineConfig
from benchmarks.backends import Backend, open_backends
from benchmarks.database import restore
from benchmarks.scenario import Scenario
from tests.support.seed import create_experiment

EXPERIMENTS = 4
OLD = 250_000
NEW = 1_000
RATE_CAP = 25_000
RESULTS = Path(__file__).parent / "results"


def _cli(url: str, ids: Sequence[str], cutoff: int, *extra: str) -> list[str]:
    command = [sys.executable, "-m", "async_trace_delete", "delete"]
    for experiment_id in ids:
        command += ["--experiment-id", experiment_id]
    return [*command, "--max-timestamp-millis", str(cutoff), "--tracking-uri", url, *extra]


async def _in_thread(function: Any, *args: Any) -> Any:
    return await anyio.to_thread.run_sync(function, *args)


async def measure(backend: Backend, workdir: Path) -> dict[str, Any]:
    """The three measurements on one backend."""
    url = backend.base_url
    ids = [await create_experiment(url, f"counting-{index}") for index in range(EXPERIMENTS)]
    scenario = Scenario(experiments=EXPERIMENTS, old=OLD, new=NEW)
    cutoff = scenario.cutoff_ms
    started = time.perf_counter()
    seeded = await _in_thread(lambda: restore(backend.database, scenario, ids))
    print(f"[{backend.name}] seeded {seeded:,} traces in {time.perf_counter() - started:.1f} s")
    truth = sum(old for old, _ in backend.database.counts(ids, cutoff).values())
    result: dict[str, Any] = {"backend": backend.name, "old_traces": truth}

    # 1. The dry run, a fresh process end to end, and Engine.plan in process.
    started = time.perf_counter()
    done = await anyio.run_process(_cli(url, ids, cutoff, "--json"))
    cli_seconds = time.perf_counter() - started
    payload = json.loads(done.stdout)
    config = EngineConfig(client=ClientConfig(tracking_uri=url))
    async with Engine(config) as engine:
        specs = [DeleteSpec(experiment_id=i, max_timestamp_millis=cutoff) for i in ids]
        started = time.perf_counter()
        plan = await engine.plan(specs)
        plan_seconds = time.perf_counter() - started
    result["dry_run"] = {
        "cli_seconds": round(cli_seconds, 2),
        "cli_would_delete": payload["would_delete"],
        "engine_plan_seconds": round(plan_seconds, 3),
        "engine_would_delete": plan.would_delete,
        "count_methods": sorted({job.count_method for job in plan.jobs}),
        "exact": payload["would_delete"] == plan.would_delete == truth,
    }
    print(f"[{backend.name}] dry run: {result['dry_run']}")

    # 2. Time to the first confirmed delete of --execute, then interrupt.
    audit = workdir / f"{backend.name}-audit.jsonl"
    audit.unlink(missing_ok=True)  # a log of an earlier run would answer at once
    command = _cli(url, ids, cutoff, "--execute", "--json", "--audit-log", str(audit))
    started = time.perf_counter()
    process = await anyio.open_process(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    first: float | None = None
    while process.returncode is None and time.perf_counter() - started < 120:
        if await _in_thread(_has_batch, audit):
            first = time.perf_counter() - started
            break
        await anyio.sleep(0.02)
    if process.returncode is None:
        process.send_signal(signal.SIGINT)
    with anyio.fail_after(120):
        await process.wait()
    result["first_delete_seconds"] = None if first is None else round(first, 2)
    print(f"[{backend.name}] first confirmed delete after {first} s")
    await _in_thread(lambda: restore(backend.database, scenario, ids))

    # 3. The CLI's --execute rate against Engine.run, each job capped.
    capped = _cli(url, ids, cutoff, "--execute", "--json", "--max-traces", str(RATE_CAP))
    started = time.perf_counter()
    done = await anyio.run_process(capped)
    cli_seconds = time.perf_counter() - started
    cli_deleted = json.loads(done.stdout)["deleted"]
    await _in_thread(lambda: restore(backend.database, scenario, ids))
    async with Engine(config) as engine:
        specs = [
            DeleteSpec(experiment_id=i, max_timestamp_millis=cutoff, max_traces=RATE_CAP)
            for i in ids
        ]
        started = time.perf_counter()
        report = await engine.run(specs)
        engine_seconds = time.perf_counter() - started
    await _in_thread(lambda: restore(backend.database, scenario, ids))
    cli_rate, engine_rate = cli_deleted / cli_seconds, report.deleted / engine_seconds
    result["execute"] = {
        "cli_deleted": cli_deleted,
        "cli_seconds": round(cli_seconds, 2),
        "cli_rate": round(cli_rate),
        "engine_deleted": report.deleted,
        "engine_seconds": round(engine_seconds, 2),
        "engine_rate": round(engine_rate),
        "cli_over_engine": round(cli_rate / engine_rate, 2),
    }
    print(f"[{backend.name}] execute: {result['execute']}")
    return result


def _markdown(run: dict[str, Any]) -> str:
    lines = [
        f"Measured {run['measured']} on {run['machine']}; whole run {run['seconds']:.0f} s. "
        f"{EXPERIMENTS} experiments x {OLD:,} traces older than the cutoff (+ {NEW:,} newer "
        "each). Reproduce: `python -m benchmarks.counting`.",
        "",
        "| backend | dry run, CLI end to end | `Engine.plan` | exact | first confirmed delete "
        "(`--execute`) | CLI `--execute` / `Engine.run` (25,000 per job) |",
        "|---|---:|---:|:---:|---:|---:|",
    ]
    for item in run["backends"]:
        dry, execute = item["dry_run"], item["execute"]
        first = item["first_delete_seconds"]
        lines.append(
            f"| {item['backend']} | {dry['cli_seconds']:.2f} s ({dry['cli_would_delete']:,}) "
            f"| {dry['engine_plan_seconds']:.2f} s | {'yes' if dry['exact'] else '**no**'} "
            f"| {'-' if first is None else f'{first:.2f} s'} "
            f"| {execute['cli_over_engine']:.2f}x ({execute['cli_rate']:,}/s vs "
            f"{execute['engine_rate']:,}/s) |"
        )
    return "\n".join(lines) + "\n"


async def _main(names: Sequence[str], output: Path) -> None:
    started = time.perf_counter()
    results = []
    with open_backends(names) as (backends, _):
        workdir = Path(os.environ.get("TMPDIR", "/tmp"))
        for backend in backends:
            results.append(await measure(backend, workdir))
    run = {
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": (
            f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}"
        ),
        "seconds": time.perf_counter() - started,
        "backends": results,
    }
    await _in_thread(_write, output, run)
    print(_markdown(run))


def _has_batch(audit: Path) -> bool:
    if not audit.exists():
        return False
    lines = audit.read_text().splitlines()
    return any(line.endswith("}") and json.loads(line).get("event") == "batch" for line in lines)


def _write(output: Path, run: dict[str, Any]) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / "counting.json").write_text(json.dumps(run, indent=2) + "\n")
    (output / "counting.md").write_text(_markdown(run))


def main(argv: Sequence[str] | None = None) -> None:
    """Run the counting benchmark."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.counting")
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgres"])
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    anyio.run(_main, args.backend or ["sqlite", "postgres"], args.output)


if __name__ == "__main__":
    main()
