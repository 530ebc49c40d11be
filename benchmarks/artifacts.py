"""What `--with-artifacts` costs, side by side with the same cleanup without it (issue 15).

A local `mlflow server` as users run it (SQLite, 4 workers, artifacts proxied into a local
`--artifacts-destination`), 2 experiments x 20,000 traces older than the cutoff and 1,000
newer, seeded by bulk SQL insert. Some traces get a trace folder (`<exp>/traces/<id>/
artifacts/traces.json`, written straight to the artifact store's disk), in the proportions
users have: none (traces logged by MLflow >= 3.6 whose spans went to the database), 10%, and
60% (3 of 5 traces logged by the 3.17.2 SDK got one in our test; every trace from before 3.6
has one). The same cutoff cleanup then runs, restored in between:

* `Engine.run` without artifacts (the folders stay: what MLflow's own delete does);
* `Engine.run` with `with_artifacts=True` (default `EngineConfig`: folder calls at 100/s);
* the same with `artifact_rate_limit=1000` (how fast the server removes folders when asked to);
* without artifacts, then `Engine.sweep_artifacts(execute=True)` (the other way to get there).

Every run is checked: every old trace gone and every new one kept (database), no folder left
for an old trace and every new trace's folder kept (disk).

Reproduce: `python -m benchmarks.artifacts` (or `make bench-artifacts`); figures go to
`benchmarks/results/artifacts.json` and `.md`. The machine is shared: compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from async_trace_delete import ClientConfig, DeleteSpec, Engine, EngineConfig
from benchmarks.backends import Backend, open_backends
from benchmarks.database import restore
from benchmarks.scenario import Scenario, trace_id
from tests.support.seed import create_experiment

EXPERIMENTS = 2
OLD = 20_000
NEW = 1_000
SHARES = (0.0, 0.1, 0.6)
SERVER_WORKERS = 4  # mlflow server's default
FAST_ARTIFACT_RATE = 1000.0  # what the server can take when the default 100/s is lifted
RESULTS = Path(__file__).parent / "results"
TRACE_JSON = b'{"spans": [], "info": {"note": "a stand-in for the SDK upload"}}'


def _folder_ids(experiment_id: str, kind: str, count: int, share: float) -> list[str]:
    """The traces of one kind that get a folder: ``share`` of them, spread evenly."""
    chosen = [i for i in range(count) if int((i + 1) * share) > int(i * share)]
    return [trace_id(int(experiment_id), kind, i) for i in chosen]


def _make_folders(root: Path, experiment_ids: Sequence[str], share: float) -> dict[str, int]:
    """(Re)write the folders on disk; return how many old and new traces have one."""
    made = {"old": 0, "new": 0}
    for experiment_id in experiment_ids:
        traces = root / experiment_id / "traces"
        shutil.rmtree(traces, ignore_errors=True)
        for kind, count in (("old", OLD), ("new", NEW)):
            for request_id in _folder_ids(experiment_id, kind, count, share):
                folder = traces / request_id / "artifacts"
                folder.mkdir(parents=True)
                (folder / "traces.json").write_bytes(TRACE_JSON)
                made[kind] += 1
    return made


def _folders_left(root: Path, experiment_ids: Sequence[str]) -> dict[str, int]:
    """How many old and new traces still have a folder on disk."""
    left = {"old": 0, "new": 0}
    for experiment_id in experiment_ids:
        traces = root / experiment_id / "traces"
        names = {entry.name for entry in traces.iterdir()} if traces.is_dir() else set()
        for kind, count in (("old", OLD), ("new", NEW)):
            left[kind] += sum(
                1 for i in range(count) if trace_id(int(experiment_id), kind, i) in names
            )
    return left


async def _in_thread(function: Any, *args: Any) -> Any:
    return await anyio.to_thread.run_sync(function, *args)


async def _run(
    backend: Backend,
    ids: Sequence[str],
    cutoff: int,
    *,
    with_artifacts: bool,
    sweep: bool,
    artifact_rate: float | None,
) -> dict[str, Any]:
    settings = {} if artifact_rate is None else {"artifact_rate_limit": artifact_rate}
    config = EngineConfig(client=ClientConfig(tracking_uri=backend.base_url), **settings)
    specs = [
        DeleteSpec(experiment_id=i, max_timestamp_millis=cutoff, with_artifacts=with_artifacts)
        for i in ids
    ]
    async with Engine(config) as engine:
        started = time.perf_counter()
        report = await engine.run(specs)
        seconds = time.perf_counter() - started
        swept = None
        if sweep:
            started = time.perf_counter()
            swept = await engine.sweep_artifacts(ids, execute=True, count_bytes=False)
            seconds += time.perf_counter() - started
    artifacts = report.artifacts
    return {
        "seconds": round(seconds, 2),
        "deleted": report.deleted,
        "ambiguous": report.ambiguous,
        "calls": report.calls,
        "folders_removed": (
            artifacts.deleted if artifacts else (swept.deleted if swept is not None else 0)
        ),
        "folders_failed": (
            artifacts.failed if artifacts else (swept.failed if swept is not None else 0)
        ),
        "ok": report.ok and (swept is None or swept.ok),
    }


async def measure(backend: Backend, artifacts_dir: Path, shares: Sequence[float]) -> list[Any]:
    """Every share, four ways, on one backend."""
    url = backend.base_url
    ids = [await create_experiment(url, f"artifacts-{index}") for index in range(EXPERIMENTS)]
    scenario = Scenario(experiments=EXPERIMENTS, old=OLD, new=NEW)
    cutoff = scenario.cutoff_ms
    rows = []
    for share in shares:
        for name, with_artifacts, sweep, artifact_rate in (
            ("without artifacts", False, False, None),
            ("with_artifacts", True, False, None),
            ("with_artifacts, artifact_rate_limit 1000/s", True, False, FAST_ARTIFACT_RATE),
            ("without, then sweep_artifacts", False, True, None),
        ):
            await _in_thread(lambda: restore(backend.database, scenario, ids))
            made = await _in_thread(_make_folders, artifacts_dir, ids, share)
            result = await _run(
                backend,
                ids,
                cutoff,
                with_artifacts=with_artifacts,
                sweep=sweep,
                artifact_rate=artifact_rate,
            )
            left = await _in_thread(_folders_left, artifacts_dir, ids)
            counts = await _in_thread(backend.database.counts, ids, cutoff)
            old_left = sum(old for old, _ in counts.values())
            new_left = sum(new for _, new in counts.values())
            exact = (
                old_left == 0
                and new_left == scenario.total_new
                and left["new"] == made["new"]
                and (left["old"] == (made["old"] if name == "without artifacts" else 0))
            )
            row = {
                "backend": backend.name,
                "share": share,
                "way": name,
                "folders_of_old_traces": made["old"],
                **result,
                "old_folders_left": left["old"],
                "new_folders_kept": f"{left['new']}/{made['new']}",
                "exact": exact,
            }
            print(json.dumps(row))
            rows.append(row)
    return rows


def _markdown(run: dict[str, Any]) -> str:
    lines = [
        f"Measured {run['measured']} on {run['machine']}; whole run {run['seconds']:.0f} s. "
        f"{EXPERIMENTS} experiments x {OLD:,} traces older than the cutoff (+ {NEW:,} newer "
        "each), default `mlflow server` (4 workers, artifacts proxied), default `EngineConfig`. "
        "Reproduce: `python -m benchmarks.artifacts`.",
        "",
        "| backend | traces with a folder | way | seconds | vs without | folders removed "
        "| folders/s (time over without) | old folders left | new folders kept | exact |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    base: dict[tuple[str, float], float] = {}
    for row in run["rows"]:
        key = (row["backend"], row["share"])
        if row["way"] == "without artifacts":
            base[key] = row["seconds"]
        ratio = row["seconds"] / base[key] if base.get(key) else float("nan")
        extra = row["seconds"] - base.get(key, row["seconds"])
        rate = (
            f"{row['folders_removed'] / extra:,.0f}"
            if row["folders_removed"] and extra > 0
            else "-"
        )
        lines.append(
            f"| {row['backend']} | {row['share']:.0%} ({row['folders_of_old_traces']:,} old) "
            f"| {row['way']} | {row['seconds']:.2f} | {ratio:.2f}x | "
            f"{row['folders_removed']:,} | {rate} | {row['old_folders_left']:,} | "
            f"{row['new_folders_kept']} | {'yes' if row['exact'] else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


async def _main(names: Sequence[str], shares: Sequence[float], output: Path) -> None:
    started = time.perf_counter()
    rows: list[Any] = []
    with open_backends(names, workers=SERVER_WORKERS) as (backends, _):
        for backend in backends:
            artifacts_dir = backend.info.get("artifacts_dir")
            if artifacts_dir is None:
                raise RuntimeError(f"{backend.name}: the server's artifact store is unknown")
            rows += await measure(backend, Path(artifacts_dir), shares)
    run = {
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": (
            f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}"
        ),
        "seconds": time.perf_counter() - started,
        "rows": rows,
    }
    await _in_thread(_write, output, run)
    print(_markdown(run))


def _write(output: Path, run: dict[str, Any]) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / "artifacts.json").write_text(json.dumps(run, indent=2) + "\n")
    (output / "artifacts.md").write_text(_markdown(run))


def rerender(output: Path = RESULTS) -> None:
    """Write the Markdown table again from the JSON of the last run."""
    run = json.loads((output / "artifacts.json").read_text())
    (output / "artifacts.md").write_text(_markdown(run))


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m benchmarks.artifacts [--backend sqlite] [--share 0.6 ...]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgres"])
    parser.add_argument("--share", action="append", type=float, help="share of traces with folders")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    anyio.run(_main, args.backend or ["sqlite"], args.share or list(SHARES), args.output)


if __name__ == "__main__":
    main()
