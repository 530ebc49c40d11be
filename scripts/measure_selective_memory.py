"""Measure (not assert) the memory of a selective cleanup of 50,000 matching traces.

Starts its own ``mlflow server`` (SQLite), seeds three identical experiments of 50,000 ERROR
traces (the matches) and 5,000 OK ones straight into its database, then measures, in this
process (the server runs in its own):

1. ``ru_maxrss`` before and after ``Engine.run`` of ``status = 'ERROR'`` on the first
   experiment (no tracemalloc, whose bookkeeping would inflate the RSS);
2. the tracemalloc peak during the same run on the second experiment: memory allocated by the
   job and alive at its worst moment;
3. for comparison, what a naive "search everything, then delete" holds before its first
   delete: the tracemalloc peak of collecting every matching ID by search (third experiment),
   and of just holding 50,000 IDs in a list.

Each run checks the server afterwards: no ERROR trace left, every OK trace kept.

Run from the repository root (so that ``tests.support`` is importable)::

    .venv/bin/python -m scripts.measure_selective_memory
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import anyio

from async_trace_delete import (
    ClientConfig,
    DeleteSpec,
    Engine,
    EngineConfig,
    JobReport,
    JobState,
    TracesClient,
)
from tests.support.mlflow_server import MlflowServer, running_mlflow_server
from tests.support.seed import create_experiment, make_traces, seed_traces_sql

BASE_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
SEED_CHUNK = 5_000  # traces built and inserted at a time, so seeding does not raise the RSS peak
ERROR_ONLY = "status = 'ERROR'"
MIB = 1024 * 1024

T = TypeVar("T")


def max_rss_bytes() -> int:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def mib(size: int) -> str:
    """Bytes as MiB with two decimals."""
    return f"{size / MIB:8.2f} MiB"


def short_path(filename: str) -> str:
    """``package/module.py`` of a source file."""
    path = Path(filename)
    return f"{path.parent.name}/{path.name}"


def seed(db_path: Path, experiment_id: str, matches: int, others: int) -> None:
    """``matches`` ERROR traces and ``others`` OK ones, interleaved in time, in chunks."""
    every = max(1, (matches + others) // max(others, 1))
    placed_matches = 0
    placed_others = 0
    timestamp = BASE_MS
    while placed_matches < matches or placed_others < others:
        ok = min(SEED_CHUNK // every, others - placed_others)
        errors = min(SEED_CHUNK - ok, matches - placed_matches)
        chunk = make_traces(errors, start_ms=timestamp, state="ERROR") + make_traces(
            ok, start_ms=timestamp, step_ms=every, state="OK"
        )
        seed_traces_sql(db_path, experiment_id, chunk)
        timestamp += SEED_CHUNK
        placed_matches += errors
        placed_others += ok


async def count(url: str, experiment_id: str, filter_string: str) -> int:
    """How many traces of the experiment match ``filter_string`` now."""
    async with TracesClient(ClientConfig(tracking_uri=url)) as client:
        return await client.count_traces(experiment_id, filter_string=filter_string)


async def traced(action: Callable[[], Awaitable[T]]) -> tuple[T, int, int, list[str]]:
    """Run ``action`` under tracemalloc.

    Returns:
        Its result, the peak, what it still holds, and the top three holders by file.
    """
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = await action()
        gc.collect()  # what is still held, not what is garbage waiting for a collection
        current, peak = tracemalloc.get_traced_memory()
        statistics = tracemalloc.take_snapshot().statistics("filename")[:3]
    finally:
        tracemalloc.stop()
    holders = [f"{short_path(s.traceback[0].filename)} {mib(s.size).strip()}" for s in statistics]
    return result, peak, current, holders


async def selective_cleanup(url: str, experiment_id: str, page_size: int) -> JobReport:
    """The cleanup being measured: delete every ERROR trace of the experiment."""
    config = EngineConfig(client=ClientConfig(tracking_uri=url), search_page_size=page_size)
    spec = DeleteSpec(experiment_id=experiment_id, filter_string=ERROR_ONLY)
    async with Engine(config) as engine:
        report = await engine.run([spec])
    return report.jobs[0]


async def check(url: str, experiment_id: str, job: JobReport, matches: int, others: int) -> None:
    """Fail loudly unless exactly the matches went and every other trace stayed."""
    left_errors = await count(url, experiment_id, ERROR_ONLY)
    left_others = await count(url, experiment_id, "status = 'OK'")
    if (job.state, job.deleted, left_errors, left_others) != (
        JobState.COMPLETED,
        matches,
        0,
        others,
    ):
        raise SystemExit(
            f"unexpected outcome: state={job.state} deleted={job.deleted} "
            f"ERROR left={left_errors} OK left={left_others} error={job.error}"
        )


async def measure(server: MlflowServer, matches: int, others: int, page_size: int) -> None:
    """Seed, run, measure and print."""
    assert server.db_path is not None
    url = server.url
    experiments = [await create_experiment(url, f"memory-{uuid.uuid4().hex}") for _ in range(3)]
    started = time.monotonic()
    for experiment_id in experiments:
        seed(server.db_path, experiment_id, matches, others)
    print(f"seeded 3 x ({matches} ERROR + {others} OK) in {time.monotonic() - started:.1f} s")

    # 1. RSS, without tracemalloc.
    gc.collect()
    rss_before = max_rss_bytes()
    started = time.monotonic()
    job = await selective_cleanup(url, experiments[0], page_size)
    elapsed = time.monotonic() - started
    rss_after = max_rss_bytes()
    await check(url, experiments[0], job, matches, others)

    # 2. The job's own allocations.
    traced_job, job_peak, job_kept, job_holders = await traced(
        lambda: selective_cleanup(url, experiments[1], page_size)
    )
    await check(url, experiments[1], traced_job, matches, others)

    # 3. The naive way, for comparison.
    async def collect_ids() -> list[str]:
        async with TracesClient(ClientConfig(tracking_uri=url)) as client:
            return [
                trace.trace_id
                async for trace in client.iter_traces(experiments[2], filter_string=ERROR_ONLY)
            ]

    naive_ids, naive_peak, naive_kept, _ = await traced(collect_ids)
    assert len(naive_ids) == matches
    del naive_ids

    async def hold_ids() -> list[str]:
        return [f"tr-{uuid.uuid4().hex}" for _ in range(matches)]

    held_ids, list_peak, list_kept, _ = await traced(hold_ids)
    assert len(held_ids) == matches
    del held_ids

    print(
        f"selective cleanup: {job.deleted} deleted in {elapsed:.1f} s, {job.calls} delete "
        f"calls, search page {page_size}; traced run: {traced_job.deleted} deleted, "
        f"{traced_job.calls} calls"
    )
    print(f"ru_maxrss before run          {mib(rss_before)}")
    print(f"ru_maxrss after run           {mib(rss_after)}  (+{mib(rss_after - rss_before)})")
    print(f"tracemalloc peak, engine run  {mib(job_peak)}  (still held after: {mib(job_kept)})")
    print(f"  held after the run, by file: {', '.join(job_holders)}")
    print(f"naive: search all IDs first   {mib(naive_peak)}  (held list: {mib(naive_kept)})")
    print(f"naive: {matches} IDs in a list {mib(list_peak)}  (held: {mib(list_kept)})")


def main() -> None:
    """Parse arguments, start a server, measure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--matches", type=int, default=50_000, help="ERROR traces to delete")
    parser.add_argument("--others", type=int, default=5_000, help="OK traces to keep")
    parser.add_argument("--page-size", type=int, default=500, help="search page size (<= 500)")
    arguments = parser.parse_args()
    with running_mlflow_server() as server:
        anyio.run(measure, server, arguments.matches, arguments.others, arguments.page_size)


if __name__ == "__main__":
    main()
