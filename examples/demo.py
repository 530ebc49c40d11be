"""`make demo`: a real MLflow server, three experiments, one concurrent cleanup.

Starts `mlflow server` (SQLite in a temp folder, loopback, free port), seeds traces over
MLflow's own REST API (old and new, some ERROR), runs three jobs at once through the
library — a cutoff, a capped cutoff and a selective `status = 'ERROR'` cleanup — then prints
what each deleted and what the server has left, and stops the server. Exits non-zero if the
server disagrees with the report.
"""

from __future__ import annotations

import sys
import time

import anyio

from async_trace_delete import ClientConfig, DeleteSpec, Engine, EngineConfig, LoggingHook
from tests.support.mlflow_server import running_mlflow_server
from tests.support.seed import create_experiment, make_traces, remaining_traces, seed_traces_api

OLD_PER_EXPERIMENT = 500
NEW_PER_EXPERIMENT = 200
CAP = 300


async def demo(url: str) -> int:
    now_ms = time.time_ns() // 1_000_000
    day = 86_400_000
    old_start = now_ms - 40 * day  # one a minute, 40 days ago
    new_start = now_ms - 2 * day
    cutoff = now_ms - 30 * day

    names = ["demo-cutoff", "demo-capped", "demo-errors"]
    experiments = {name: await create_experiment(url, name) for name in names}
    print(f"Seeding {len(names)} experiments over MLflow's REST API ...", flush=True)
    started = time.monotonic()
    for experiment_id in experiments.values():
        old = make_traces(OLD_PER_EXPERIMENT, start_ms=old_start, step_ms=60_000, error_every=4)
        new = make_traces(NEW_PER_EXPERIMENT, start_ms=new_start, step_ms=60_000, error_every=4)
        await seed_traces_api(url, experiment_id, old + new)
    seeded = len(names) * (OLD_PER_EXPERIMENT + NEW_PER_EXPERIMENT)
    print(f"  {seeded} traces in {time.monotonic() - started:.1f}s\n")

    specs = [
        DeleteSpec(experiment_id=experiments["demo-cutoff"], max_timestamp_millis=cutoff),
        DeleteSpec(
            experiment_id=experiments["demo-capped"], max_timestamp_millis=cutoff, max_traces=CAP
        ),
        DeleteSpec(experiment_id=experiments["demo-errors"], filter_string="status = 'ERROR'"),
    ]
    config = EngineConfig(client=ClientConfig(tracking_uri=url), initial_batch_size=200)
    async with Engine(config, hooks=[LoggingHook()]) as engine:
        plan = await engine.plan(specs)
        print("Dry run (nothing deleted yet):")
        for planned in plan.jobs:
            print(f"  {planned.label:>3} ({planned.mode:8}) would delete {planned.would_delete}")
        report = await engine.run(specs, verify=True)

    print(f"\nCleanup: {report.deleted} traces deleted in {report.elapsed:.2f}s\n")
    header = f"{'experiment':<14}{'job':<10}{'deleted':>8}{'left':>7}{'left ERROR':>12}{'calls':>7}"
    print(header)
    print("-" * len(header))
    mismatches = 0
    for name, job in zip(names, report.jobs, strict=True):
        left = await remaining_traces(url, experiments[name])
        errors_left = sum(1 for trace in left if trace.state == "ERROR")
        seeded_here = OLD_PER_EXPERIMENT + NEW_PER_EXPERIMENT
        consistent = seeded_here - len(left) == job.deleted and job.verified_consistent
        mismatches += not consistent
        print(
            f"{name:<14}{job.mode:<10}{job.deleted:>8}{len(left):>7}{errors_left:>12}"
            f"{job.calls:>7}{'' if consistent else '  MISMATCH'}"
        )
    expected = [OLD_PER_EXPERIMENT, CAP, (OLD_PER_EXPERIMENT + NEW_PER_EXPERIMENT) // 4]
    if [job.deleted for job in report.jobs] != expected:
        print(f"\nunexpected counts: {[job.deleted for job in report.jobs]} != {expected}")
        return 1
    print("\nThe server agrees with the report." if not mismatches else "\nMISMATCH")
    return 1 if mismatches else 0


def main() -> int:
    print("Starting a local mlflow server (SQLite, loopback) ...", flush=True)
    with running_mlflow_server() as server:
        print(f"  {server.url}\n")
        return anyio.run(demo, server.url)


if __name__ == "__main__":
    sys.exit(main())
