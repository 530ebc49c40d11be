"""What an experiment selector costs at 2,000 experiments: selecting, and planning one job each.

A local `mlflow server` as users run it (SQLite, 4 uvicorn workers, `mlflow server`'s
default), started here, then the same with 1 worker (one server at a time). Once a server has
created its schema, 2,000 experiments are inserted straight into its `experiments` table (the
API creates ~30/s), with `experiment_tags` rows: `team=t<i % 10>` on every one,
`retention=14d` on every 100th; 5 of them are then marked deleted. 200 of them get 5 traces 40
days old and 5 traces 1 hour old (SQL, as the tests seed). The job is
`DeleteSpec(experiments=ExperimentSelector(all_experiments=True, exclude_ids=<5 IDs>),
older_than=30d, retention_tag="retention", min_retention=7d)`: the Default experiment and
1,990 of ours.

Measured in process, with `read_rate_limit=1000` (what the server and the engine cost) and
with the engine's default `EngineConfig` (`read_rate_limit` 250 reads/s; reads have their own
rate, apart from the deletes' `rate_limit`, and a plan counts `max_concurrency` (4) jobs side
by side):

(a) `Engine.select` of all of them (`experiments/search`, 1,000 per page, active and deleted);
(b) `Engine.plan(counts_only=True)` (one `traces/metrics` count per experiment);
(c) `Engine.plan()` with the default sample (the count, and two small searches for the sample
    and the newest where something would go);

and its dry run end to end through the CLI (a fresh
process, default rate, the 4-worker server). Every call the engine sends is counted (by
path), and every plan is checked exact against the database. Nothing is deleted. Beside them,
each server's `GET /health` latency on a kept-alive connection: the floor under every call.

Reproduce: `python -m benchmarks.selection` (or `make bench-selection`; `--workers 4` for one
server, `--experiments N`); figures go to `benchmarks/results/selection.json` and `.md`. The
machine is shared: compare within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import anyio
import httpx

from async_trace_delete import ClientConfig, DeleteSpec, Engine, EngineConfig, ExperimentSelector
from async_trace_delete._quick_ack import network_transport
from tests.support.mlflow_server import MlflowServer, running_mlflow_server
from tests.support.seed import make_traces, seed_traces_sql

EXPERIMENTS = 2_000
WITH_TRACES = 200  # every 10th experiment
OLD_PER_EXPERIMENT = 5
NEW_PER_EXPERIMENT = 5
DELETED = 5
EXCLUDED = 5
RETENTION_EVERY = 100
PROBE_REQUESTS = 30
DAY_MS = 86_400_000
KEEP = timedelta(days=30)
DEFAULT_RATE = EngineConfig.model_fields["read_rate_limit"].default
FAST_RATE = 1000.0
RESULTS = Path(__file__).parent / "results"
STARTUP_TIMEOUT_SECONDS = 300.0
CLI_TIMEOUT_SECONDS = 900.0


def insert_experiments(db_path: Path, count: int, now_ms: int) -> list[str]:
    """Insert ``count`` experiments (and their tags) as MLflow 3.17.2 stores them; their IDs.

    The columns are those of its `experiments` table: `experiment_id`, `name`, `workspace`
    (`default` unless the server runs with workspaces), `artifact_location` (the Default
    experiment's, with its ID replaced: `mlflow-artifacts:/<id>` on a serving server),
    `lifecycle_stage`, `creation_time`, `last_update_time`.
    """
    with contextlib.closing(sqlite3.connect(db_path, timeout=60)) as connection:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(experiments)")}
        expected = {
            "experiment_id",
            "name",
            "artifact_location",
            "lifecycle_stage",
            "creation_time",
            "last_update_time",
        }
        if not expected <= columns:
            raise RuntimeError(f"unexpected experiments table: {sorted(columns)}")
        default_location, workspace = connection.execute(
            "SELECT artifact_location, "
            + ("workspace" if "workspace" in columns else "NULL")
            + " FROM experiments WHERE experiment_id = 0"
        ).fetchone()
        root = str(default_location).rstrip("/").removesuffix("/0")
        (first,) = connection.execute(
            "SELECT COALESCE(MAX(experiment_id), 0) + 1 FROM experiments"
        ).fetchone()
        ids = list(range(int(first), int(first) + count))
        rows = [
            {
                "experiment_id": i,
                "name": f"bench-sel-{i:05d}",
                "artifact_location": f"{root}/{i}",
                "lifecycle_stage": "active",
                "creation_time": now_ms,
                "last_update_time": now_ms,
                "workspace": workspace,
            }
            for i in ids
        ]
        names = [name for name in rows[0] if name in columns]
        with connection:
            connection.executemany(
                f"INSERT INTO experiments ({', '.join(names)}) "
                f"VALUES ({', '.join(':' + name for name in names)})",
                rows,
            )
            tags = [("team", f"t{i % 10}", i) for i in ids]
            tags += [("retention", "14d", i) for i in ids[::RETENTION_EVERY]]
            connection.executemany(
                'INSERT INTO experiment_tags ("key", value, experiment_id) VALUES (?, ?, ?)', tags
            )
    return [str(i) for i in ids]


def mark_deleted(db_path: Path, ids: list[str]) -> None:
    with contextlib.closing(sqlite3.connect(db_path, timeout=60)) as connection, connection:
        connection.executemany(
            "UPDATE experiments SET lifecycle_stage = 'deleted' WHERE experiment_id = ?",
            [(int(i),) for i in ids],
        )


def old_traces_in(db_path: Path, ids: set[str], cutoff_ms: int) -> int:
    """Traces at or before the cutoff in these experiments (the truth for the plan)."""
    with contextlib.closing(sqlite3.connect(db_path, timeout=60)) as connection:
        rows = connection.execute(
            "SELECT experiment_id, COUNT(*) FROM trace_info WHERE timestamp_ms <= ? "
            "GROUP BY experiment_id",
            (cutoff_ms,),
        ).fetchall()
    return sum(int(n) for experiment_id, n in rows if str(experiment_id) in ids)


@contextlib.contextmanager
def counting_calls() -> Iterator[Counter[str]]:
    """Count every request any httpx.AsyncClient sends here (the engine's), by path."""
    counts: Counter[str] = Counter()
    original = httpx.AsyncClient.send

    async def send(
        self: httpx.AsyncClient, request: httpx.Request, *args: Any, **kwargs: Any
    ) -> httpx.Response:
        counts[request.url.path.rsplit("/mlflow/", 1)[-1]] += 1
        return await original(self, request, *args, **kwargs)

    with mock.patch.object(httpx.AsyncClient, "send", send):
        yield counts


def job(exclude: list[str]) -> DeleteSpec:
    return DeleteSpec(
        experiments=ExperimentSelector(all_experiments=True, exclude_ids=tuple(exclude)),
        older_than=KEEP,
        retention_tag="retention",
        min_retention=timedelta(days=7),
        label="nightly",
    )


async def measure(
    url: str, workers: int, rate: float, exclude: list[str], truth: Any
) -> dict[str, Any]:
    """(a), (b) and (c) with one engine reading at ``rate`` calls/s."""
    result: dict[str, Any] = {"read_rate_limit": rate}
    config = EngineConfig(client=ClientConfig(tracking_uri=url), read_rate_limit=rate)
    async with Engine(config) as engine:
        with counting_calls() as calls:
            started = time.perf_counter()
            selection = await engine.select([job(exclude)])
            result["select"] = {
                "seconds": round(time.perf_counter() - started, 3),
                "jobs": len(selection.resolved),
                "skipped": dict(Counter(s.reason for s in selection.skipped)),
                "calls": dict(calls),
            }
        print(f"[{workers} workers, rate {rate:g}] select: {result['select']}", flush=True)
        for name, counts_only in (("plan_counts_only", True), ("plan", False)):
            with counting_calls() as calls:
                started = time.perf_counter()
                plan = await engine.plan([job(exclude)], counts_only=counts_only)
                seconds = time.perf_counter() - started
            total = sum(calls.values())
            selected = {item.experiment_id for item in plan.jobs}
            result[name] = {
                "seconds": round(seconds, 2),
                "jobs": len(plan.jobs),
                "would_delete": plan.would_delete,
                "exact": plan.would_delete == truth(selected),
                "calls": dict(calls),
                "calls_total": total,
                "calls_per_second": round(total / seconds, 1),
                "ms_per_call": round(1000 * seconds / total, 1),
                "count_methods": dict(Counter(j.count_method for j in plan.jobs)),
            }
            print(f"[{workers} workers, rate {rate:g}] {name}: {result[name]}", flush=True)
    return result


def cli_dry_run(url: str, exclude: list[str]) -> dict[str, Any]:
    """The CLI's dry run of the same job, end to end, at its default rate."""
    command = [sys.executable, "-m", "async_trace_delete", "delete", "--all-experiments"]
    for experiment_id in exclude:
        command += ["--exclude-experiment-id", experiment_id]
    command += ["--older-than", "30d", "--retention-tag", "retention", "--min-retention", "7d"]
    command += ["--tracking-uri", url, "--json"]
    started = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=CLI_TIMEOUT_SECONDS
    )
    seconds = time.perf_counter() - started
    result: dict[str, Any] = {"seconds": round(seconds, 2), "exit_code": done.returncode}
    try:
        payload = json.loads(done.stdout)
        result["would_delete"] = payload.get("would_delete")
        result["jobs"] = len(payload.get("jobs", []))
    except json.JSONDecodeError:
        result["stderr_tail"] = done.stderr[-500:]
    return result


async def keep_alive_latency(url: str, requests: int = PROBE_REQUESTS) -> dict[str, float]:
    """Milliseconds one ``GET /health`` takes on a kept-alive connection (p50, p90), with a
    plain httpx client and through the engine's own transport (TCP_QUICKACK before every
    read): the floor under every call."""
    result: dict[str, float] = {}
    for name, transport in (("plain", None), ("engine", network_transport(verify=True))):
        async with httpx.AsyncClient(base_url=url, timeout=60.0, transport=transport) as client:
            await client.get("/health")  # the first request on a connection is not steady
            latencies = []
            for _ in range(requests):
                started = time.perf_counter()
                (await client.get("/health")).raise_for_status()
                latencies.append(1000 * (time.perf_counter() - started))
        latencies.sort()
        result[f"{name}_p50_ms"] = round(statistics.median(latencies), 1)
        result[f"{name}_p90_ms"] = round(latencies[int(0.9 * len(latencies))], 1)
    return result


async def run(experiments: int, workers: int, with_cli: bool) -> dict[str, Any]:
    """One server with ``workers`` uvicorn workers (a temporary directory, removed after)."""
    started = time.perf_counter()
    with running_mlflow_server(workers=workers, startup_timeout=STARTUP_TIMEOUT_SECONDS) as server:
        return await _run_on(server, experiments, workers, started, with_cli)


async def _run_on(
    server: MlflowServer, experiments: int, workers: int, started: float, with_cli: bool
) -> dict[str, Any]:
    assert server.db_path is not None
    db = server.db_path
    info: dict[str, Any] = {
        "workers": workers,
        "backend": "sqlite",
        "startup_seconds": round(time.perf_counter() - started, 1),
    }
    now = time.time_ns() // 1_000_000
    seeding = time.perf_counter()
    ids = insert_experiments(db, experiments, now)
    with_traces = ids[:: max(1, experiments // WITH_TRACES)]
    for experiment_id in with_traces:
        traces = make_traces(OLD_PER_EXPERIMENT, start_ms=now - 40 * DAY_MS)
        traces += make_traces(NEW_PER_EXPERIMENT, start_ms=now - DAY_MS // 24)
        seed_traces_sql(db, experiment_id, traces)
    # Deleted and excluded ones: some holding traces, so that a wrong answer would show.
    deleted = [with_traces[1], *ids[3 : 3 + DELETED - 1]]
    mark_deleted(db, deleted)
    exclude = [with_traces[2], *ids[13 : 13 + EXCLUDED - 1]]
    info["seed_seconds"] = round(time.perf_counter() - seeding, 2)
    info["experiments"] = {
        "inserted": experiments,
        "deleted": len(deleted),
        "excluded": len(exclude),
        "with_traces": len(with_traces),
        "with_retention_tag": len(ids[::RETENTION_EVERY]),
        "selected_expected": experiments - len(deleted) - len(exclude) + 1,  # + Default
    }
    info["keep_alive_health"] = await keep_alive_latency(server.url)
    print(f"[{workers} workers] GET /health, kept alive: {info['keep_alive_health']}", flush=True)
    cutoff = now - int(KEEP.total_seconds() * 1000)

    def truth(selected: set[str]) -> int:
        # Every cutoff (30d, or 14d by tag) splits 40-day-old from 1-hour-old traces alike.
        return old_traces_in(db, selected, cutoff)

    info["runs"] = [
        await measure(server.url, workers, rate, exclude, truth)
        for rate in (FAST_RATE, DEFAULT_RATE)
    ]
    if with_cli:
        info["cli"] = await anyio.to_thread.run_sync(cli_dry_run, server.url, exclude)
        print(f"[{workers} workers] cli: {info['cli']}", flush=True)
    return info


def markdown(run: dict[str, Any]) -> str:
    first = run["servers"][0]["experiments"]
    lines = [
        f"Measured {run['measured']} on {run['machine']}; whole run {run['seconds']:.0f} s. "
        f"A local `mlflow server` (SQLite) with {first['inserted']:,} experiments + Default "
        f"({first['deleted']} deleted, {first['excluded']} excluded, {first['with_traces']} "
        f"holding traces); one `all_experiments` job selecting {first['selected_expected']:,}. "
        "Calls are counted as sent; every plan is checked exact against the database. "
        "Reproduce: `python -m benchmarks.selection`.",
        "",
        "| server workers | `GET /health` kept alive (p50: plain httpx / the engine's) "
        "| `read_rate_limit` | (a) `Engine.select` "
        "| (b) `plan(counts_only=True)` | (c) `plan()` | exact |",
        "|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for server in run["servers"]:
        for item in server["runs"]:
            sel, counts, full = item["select"], item["plan_counts_only"], item["plan"]
            health = server["keep_alive_health"]
            exact = counts["exact"] and full["exact"] and sel["jobs"] == counts["jobs"]
            lines.append(
                f"| {server['workers']} | {health['plain_p50_ms']:.1f} ms / "
                f"{health['engine_p50_ms']:.1f} ms "
                f"| {item['read_rate_limit']:g}/s | {sel['seconds']:.2f} s ({sel['jobs']:,} jobs, "
                f"{sum(sel['calls'].values())} calls) "
                f"| {counts['seconds']:.1f} s ({counts['calls_total']:,} calls, "
                f"{counts['ms_per_call']:.1f} ms each) "
                f"| {full['seconds']:.1f} s ({full['calls_total']:,} calls, "
                f"{full['ms_per_call']:.1f} ms each) | {'yes' if exact else '**no**'} |"
            )
    lines += ["", *_limits(run)]
    for server in run["servers"]:
        cli = server.get("cli")
        if cli is None:
            continue
        lines.append("")
        lines.append(
            f"CLI dry run end to end ({server['workers']} workers, default rate): "
            f"{cli['seconds']:.1f} s, exit {cli['exit_code']}, {cli.get('jobs')} jobs, "
            f"would delete {cli.get('would_delete')}."
        )
    return "\n".join(lines) + "\n"


def _limits(run: dict[str, Any]) -> list[str]:
    """What bounds each plan, from the figures: the rate limit, or one call at a time."""
    notes = []
    for server in run["servers"]:
        for item in server["runs"]:
            full = item["plan"]
            paced = full["calls_total"] / item["read_rate_limit"]
            bound = "the read rate" if paced >= 0.8 * full["seconds"] else "latency per call"
            notes.append(
                f"* {server['workers']} worker(s), {item['read_rate_limit']:g}/s: `plan()` "
                f"{full['seconds']:.1f} s for {full['calls_total']:,} calls; paced alone "
                f"{paced:.1f} s, {full['ms_per_call']:.1f} ms per call with up to 4 at once: "
                f"{bound}."
            )
    return [
        "What limits a plan: reads are paced at `read_rate_limit` (apart from the deletes' "
        "`rate_limit`), and `Engine.plan` counts `max_concurrency` jobs side by side, so it "
        "takes the longer of calls / rate and calls x latency / 4:",
        *notes,
        "",
        "A 4-worker `mlflow server` answers every request on a kept-alive connection ~40 ms "
        "late (`GET /health` above): uvicorn with `--workers` > 1 binds its listening socket "
        "without `IPPROTO_TCP`, so asyncio never sets `TCP_NODELAY` on the connections it "
        "accepts, and the second write of each response waits for the client's delayed ACK "
        "(Nagle; reported as Kludex/uvicorn#3149; the uvicorn 0.54.0 MLflow 3.17.2 runs here "
        "still binds so). The engine's transport sets `TCP_QUICKACK` before every read, so "
        "the client acknowledges at once and the server's second write leaves without the "
        "wait (the second figure of the `GET /health` column).",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--experiments", type=int, default=EXPERIMENTS)
    parser.add_argument(
        "--workers",
        default="4,1",
        help="uvicorn workers of each server, one server after another (default 4,1)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    workers = [int(part) for part in args.workers.split(",")]
    servers = [
        anyio.run(run, args.experiments, count, index == 0) for index, count in enumerate(workers)
    ]
    result = {
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": (
            f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}"
        ),
        "seconds": round(time.perf_counter() - started, 1),
        "servers": servers,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "selection.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.output / "selection.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
