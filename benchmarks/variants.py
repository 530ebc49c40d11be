"""The ways to clean a backfill that the benchmark compares, each on identically seeded data.

1. `docs-recipe`: MLflow's documented loop, `MlflowClient.delete_traces(max_traces=100)` with
   `sleep(0.1)`, experiments one after another (in a thread: the client is synchronous).
2. `fixed-<n>-sleep-<s>`: the loop users hand-write, "batch n, sleep s": sequential cutoff
   deletes with `max_traces=n` and a pause of s seconds after every full call, one call at a
   time. A grid of them is the frontier the engine is measured against; `fixed-1000-sleep-0.1`
   is the hand-written loop the engine must beat. They go through httpx, not `MlflowClient`:
   with a cutoff, `MlflowClient.delete_traces(max_traces=n)` sends exactly one such POST per
   call (mlflow/tracing/client.py -> RestStore, 3.17.2; the batches of 100 apply to IDs only),
   so the server sees the same calls, while one async client keeps every grid point free of
   a thread hop and of urllib3's retries changing the timing.
3. `unbounded`: one delete call per experiment with only the cutoff.
4. `engine-<t>s`: this library at latency target t, experiments one after another (one call
   in flight); `engine` is the default target (1 s).
5. `engine-concurrent`: all experiments submitted at once, adaptive concurrency (up to 4).
6. `engine-budget`: the default target plus `foreground_budget` (the p99 other clients may see,
   kept by a canary).

A variant may be time-boxed: it stops sending calls once its deadline passes (the call in flight
completes), so the slow ones are measured on their steady rate instead of run for minutes.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import anyio.to_thread
import httpx

from async_trace_delete import ClientConfig, DeleteSpec, Engine, EngineConfig

DELETE_PATH = "/api/2.0/mlflow/traces/delete-traces"
BASELINE_TIMEOUT_SECONDS = 900.0
DOCS_MAX_TRACES = 100
DOCS_PAUSE_SECONDS = 0.1


@dataclass(frozen=True)
class Target:
    """What to clean: the server, the experiments and the cutoff."""

    base_url: str
    experiment_ids: tuple[str, ...]
    cutoff_ms: int


@dataclass(frozen=True)
class CallRecord:
    """One delete call: when it started (s since the variant started), what it asked for."""

    started_at: float
    requested: int | None
    deleted: int | None
    latency: float
    experiment_id: str
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times rounded to the millisecond)."""
        return {
            "started_at": round(self.started_at, 3),
            "requested": self.requested,
            "deleted": self.deleted,
            "latency": round(self.latency, 3),
            "experiment_id": self.experiment_id,
            "error": self.error,
        }


@dataclass
class VariantRun:
    """What a variant did, in its own words (the runner checks it against the database)."""

    deleted: int = 0
    elapsed: float = 0.0
    calls: list[CallRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    time_boxed: bool = False
    details: dict[str, Any] = field(default_factory=dict)


class Variant(Protocol):
    """One way of cleaning the backfill."""

    name: str
    description: str

    async def run(self, target: Target, deadline: float | None) -> VariantRun:
        """Clean `target`; stop sending calls after `deadline` (`time.monotonic()`) if set."""
        ...


def _passed(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


@dataclass
class DocsRecipe:
    """MLflow's documented recipe: batches of 100 via `MlflowClient`, 0.1 s apart."""

    name: str = "docs-recipe"
    description: str = (
        "MlflowClient.delete_traces(max_traces=100) + sleep(0.1), experiments in turn"
    )

    async def run(self, target: Target, deadline: float | None) -> VariantRun:
        # Importing mlflow takes seconds: do it before the clock starts.
        await anyio.to_thread.run_sync(importlib.import_module, "mlflow")
        return await anyio.to_thread.run_sync(self._run_sync, target, deadline)

    def _run_sync(self, target: Target, deadline: float | None) -> VariantRun:
        import mlflow  # heavy, bench-only; preloaded by the runner before any clock starts

        logging.getLogger("mlflow").setLevel(logging.ERROR)
        client = mlflow.MlflowClient(tracking_uri=target.base_url)
        result = VariantRun()
        started = time.perf_counter()
        for experiment_id in target.experiment_ids:
            while True:
                if _passed(deadline):
                    result.time_boxed = True
                    break
                call_started = time.perf_counter()
                try:
                    deleted = int(
                        client.delete_traces(
                            experiment_id,
                            max_timestamp_millis=target.cutoff_ms,
                            max_traces=DOCS_MAX_TRACES,
                        )
                    )
                except Exception as error:  # MlflowException or transport: recorded
                    latency = time.perf_counter() - call_started
                    message = f"{type(error).__name__}: {str(error)[:300]}"
                    result.calls.append(
                        CallRecord(
                            call_started - started,
                            DOCS_MAX_TRACES,
                            None,
                            latency,
                            experiment_id,
                            message,
                        )
                    )
                    result.errors.append(message)
                    break
                latency = time.perf_counter() - call_started
                result.calls.append(
                    CallRecord(
                        call_started - started, DOCS_MAX_TRACES, deleted, latency, experiment_id
                    )
                )
                result.deleted += deleted
                if deleted < DOCS_MAX_TRACES:
                    break
                time.sleep(DOCS_PAUSE_SECONDS)
            if result.time_boxed:
                break
        result.elapsed = time.perf_counter() - started
        return result


async def _delete_call(
    client: httpx.AsyncClient, experiment_id: str, cutoff_ms: int, max_traces: int | None
) -> tuple[int | None, str | None]:
    """One `delete-traces` call: (deleted, None) or (None, error)."""
    body: dict[str, Any] = {"experiment_id": experiment_id, "max_timestamp_millis": cutoff_ms}
    if max_traces is not None:
        body["max_traces"] = max_traces
    try:
        response = await client.post(DELETE_PATH, json=body)
    except httpx.HTTPError as error:
        return None, f"{type(error).__name__}: {error}"
    if response.status_code != 200:
        return None, f"HTTP {response.status_code}: {response.text[:300]}"
    return int(response.json().get("traces_deleted", 0)), None


async def sequential_deletes(
    target: Target,
    max_traces: int | None,
    deadline: float | None,
    *,
    stop_on_error: bool = True,
    pause: float = 0.0,
) -> VariantRun:
    """Delete experiment by experiment, one call at a time, `max_traces` per call (or all).

    With a cap, an experiment is done when a call deletes fewer than asked (after a full call
    the loop sleeps `pause` seconds, as a hand-written loop does); without one, after its
    single call.
    """
    result = VariantRun()
    async with httpx.AsyncClient(
        base_url=target.base_url, timeout=BASELINE_TIMEOUT_SECONDS
    ) as client:
        started = time.perf_counter()
        for experiment_id in target.experiment_ids:
            while True:
                if _passed(deadline):
                    result.time_boxed = True
                    break
                call_started = time.perf_counter()
                deleted, error = await _delete_call(
                    client, experiment_id, target.cutoff_ms, max_traces
                )
                latency = time.perf_counter() - call_started
                result.calls.append(
                    CallRecord(
                        call_started - started, max_traces, deleted, latency, experiment_id, error
                    )
                )
                if error is not None:
                    result.errors.append(f"experiment {experiment_id}: {error}")
                    break
                assert deleted is not None
                result.deleted += deleted
                if max_traces is None or deleted < max_traces:
                    break
                if pause > 0:
                    await anyio.sleep(pause)
            if result.time_boxed or (result.errors and stop_on_error):
                break
        result.elapsed = time.perf_counter() - started
    return result


def fixed_name(size: int, pause: float) -> str:
    """`fixed-<n>-sleep-<s>`, the name of one grid point."""
    return f"fixed-{size}-sleep-{pause:g}"


@dataclass
class FixedBatch:
    """The hand-written loop: cutoff deletes with a fixed `max_traces`, `pause` s apart."""

    size: int
    pause: float = 0.0
    name: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or fixed_name(self.size, self.pause)
        self.description = self.description or (
            f"sequential httpx loop, max_traces={self.size}, sleep {self.pause:g} s after each"
            " full call"
        )

    async def run(self, target: Target, deadline: float | None) -> VariantRun:
        return await sequential_deletes(target, self.size, deadline, pause=self.pause)


@dataclass
class Unbounded:
    """One cutoff delete per experiment, no `max_traces`: the fastest a single stream can go."""

    name: str = "unbounded"
    description: str = "one delete call per experiment (cutoff only), experiments in turn"

    async def run(self, target: Target, deadline: float | None) -> VariantRun:
        # Every experiment gets its call even if one fails (e.g. SQLite's variable limit).
        return await sequential_deletes(target, None, None, stop_on_error=False)


@dataclass
class EngineVariant:
    """This library's `Engine` on all the experiments."""

    name: str
    description: str
    target_latency: float = 1.0
    max_concurrency: int = 4
    options: dict[str, Any] = field(default_factory=dict)

    async def run(self, target: Target, deadline: float | None) -> VariantRun:
        config = EngineConfig(
            client=ClientConfig(tracking_uri=target.base_url, timeout=BASELINE_TIMEOUT_SECONDS),
            target_latency=self.target_latency,
            max_concurrency=self.max_concurrency,
            **self.options,
        )
        specs = [
            DeleteSpec(experiment_id=experiment_id, max_timestamp_millis=target.cutoff_ms)
            for experiment_id in target.experiment_ids
        ]
        result = VariantRun()
        started = time.perf_counter()
        async with Engine(config) as engine, anyio.create_task_group() as group:
            opened = time.perf_counter()
            if deadline is not None:
                group.start_soon(_stop_at_deadline, engine, deadline, result)
            if self.max_concurrency == 1:
                # One after another, as an operator would with the defaults and one call at a time.
                reports = await _in_turn(engine, specs, result)
            else:
                reports = list((await engine.run(specs)).jobs)
            group.cancel_scope.cancel()
        result.elapsed = time.perf_counter() - started
        for job in reports:
            result.deleted += job.deleted
            result.errors.extend(f"experiment {job.experiment_id}: {e}" for e in job.errors)
            if job.error:
                result.errors.append(f"experiment {job.experiment_id}: {job.error}")
            result.calls.extend(
                CallRecord(
                    # BatchRecord times count from the engine's opening.
                    batch.started_at + (opened - started),
                    batch.requested,
                    batch.deleted,
                    batch.latency,
                    str(job.experiment_id),
                    None if batch.outcome == "ok" else batch.outcome,
                )
                for batch in job.batches
            )
        result.calls.sort(key=lambda call: call.started_at)
        result.details = {
            "config": config.model_dump(mode="json", exclude={"client"}),
            "jobs": [
                {
                    "experiment_id": job.experiment_id,
                    "state": str(job.state),
                    "deleted": job.deleted,
                    "ambiguous": job.ambiguous,
                    "calls": job.calls,
                    "retries": job.retries,
                    "elapsed": round(job.elapsed, 3),
                }
                for job in reports
            ],
        }
        return result


async def _in_turn(engine: Any, specs: Sequence[DeleteSpec], result: VariantRun) -> list[Any]:
    """Run the specs one after another until the time box stops the engine.

    After `stop_all()` the engine refuses to start another job (it raises: nothing was sent),
    so once the box has fallen the next experiment is not started; one that was starting just
    as it fell is refused the same way and ends the loop. The runner checks the counts
    against the database either way.
    """
    reports: list[Any] = []
    for spec in specs:
        if result.time_boxed:
            break
        try:
            reports.append((await engine.run([spec])).jobs[0])
        except Exception:
            if not result.time_boxed:
                raise
            break
    return reports


async def _stop_at_deadline(engine: Any, deadline: float, result: VariantRun) -> None:
    """At the time box, stop the engine as a user would: `stop_all()` (calls in flight finish)."""
    await anyio.sleep(max(0.0, deadline - time.monotonic()))
    result.time_boxed = True
    engine.stop_all()


def peak_in_flight(calls: Sequence[CallRecord]) -> int:
    """The most delete calls that overlapped in time."""
    events = sorted(
        [(call.started_at, 1) for call in calls]
        + [(call.started_at + call.latency, -1) for call in calls]
    )
    peak = current = 0
    for _, change in events:
        current += change
        peak = max(peak, current)
    return peak
