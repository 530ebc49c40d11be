"""Run every variant on identically seeded data, with the probe alongside, and verify each one."""

from __future__ import annotations

import importlib
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.to_thread
import httpx

from benchmarks.backends import Backend
from benchmarks.database import deleted_oldest_first, restore
from benchmarks.model import HAND_LOOP, Settings, VariantResult, engine_name
from benchmarks.probe import LatencySummary, Probe
from benchmarks.scenario import generate_rows
from benchmarks.variants import (
    DocsRecipe,
    EngineVariant,
    FixedBatch,
    Target,
    Unbounded,
    Variant,
    fixed_name,
    sequential_deletes,
)
from tests.support.seed import create_experiment

CLEANUP_BATCH = 20_000  # well under SQLite's ~250k-variable limit per call
PROBE_EXPERIMENT_TRACES = 500
WARM_UP_SECONDS = 5.0
CREATE_ATTEMPTS = 4
CREATE_RETRY_SECONDS = 3.0
TIME_BOXED_KINDS = ("docs-recipe", "fixed-")

__all__ = [
    "BackendRun",
    "Settings",
    "VariantResult",
    "build_variants",
    "engine_name",
    "hand_loop_name",
    "preload_mlflow",
]

Log = Callable[[str], None]


def build_variants(settings: Settings) -> list[Variant]:
    """The variants of the main scenario, in run order, filtered by `--variants`."""
    target = settings.target_latency
    engines: list[Variant] = [
        EngineVariant(
            engine_name(settings, latency),
            f"engine, target {latency:g} s"
            + (" (the default)" if latency == target else "")
            + ", experiments in turn (max_concurrency=1)",
            target_latency=latency,
            max_concurrency=1,
        )
        for latency in sorted({*settings.engine_targets, target, settings.large_target})
    ]
    variants: list[Variant] = [
        DocsRecipe(),
        *(FixedBatch(size, pause) for size, pause in settings.grid),
        Unbounded(),
        *engines,
        EngineVariant(
            "engine-concurrent",
            f"engine defaults (target {target:g} s), all experiments at once, adaptive "
            "concurrency up to 4",
            target_latency=target,
            max_concurrency=4,
        ),
        EngineVariant(
            "engine-budget",
            f"engine, target {target:g} s, foreground_budget {settings.foreground_budget:g} s"
            " (canary-paced), experiments in turn",
            target_latency=target,
            max_concurrency=1,
            options={"foreground_budget": settings.foreground_budget},
        ),
    ]
    if settings.variants is None:
        return variants
    wanted = set(settings.variants)
    return [
        v
        for v in variants
        if v.name in wanted or (v.name.startswith("fixed-") and "fixed" in wanted)
    ]


def hand_loop_name() -> str:
    """The name of the hand-written "1,000 per call, sleep 0.1 s" loop."""
    return fixed_name(*HAND_LOOP)


def _time_boxed(variant: Variant) -> bool:
    return variant.name.startswith(TIME_BOXED_KINDS)


async def _create_experiment(url: str, name: str) -> str:
    """Create an experiment, retrying a dropped connection (setup only: nothing is timed).

    Right after start-up a 4-worker `mlflow server` on a loaded machine has closed a first
    request without an answer. Each attempt uses a fresh name, so an attempt that did create
    the experiment before its answer was lost cannot make the next one fail.
    """
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            return await create_experiment(url, name if attempt == 1 else f"{name}-{attempt}")
        except httpx.TransportError:
            if attempt == CREATE_ATTEMPTS:
                raise
            await anyio.sleep(CREATE_RETRY_SECONDS)
    raise AssertionError("unreachable: the last attempt returns or raises")


async def _in_thread(function: Callable[..., Any], *args: Any) -> Any:
    return await anyio.to_thread.run_sync(function, *args)


def time_box_for(settings: Settings, variant: Variant) -> float | None:
    """The variant's time box, or None when it runs to the end.

    The docs recipe and the fixed loops are boxed (every call costs the same, so the rate
    in the box is their steady rate). The hand-written loop the default engine must beat
    is boxed like the engine (`engine_box`): a 4 s box of it held three calls on MariaDB
    and none of the lock waits a 15 s one meets (probe p99 0.09 s against 1.23 s). The
    engine below the large target, the concurrent engine and the budget-paced one are
    boxed at `engine_box` / `concurrent_box` (0 = to the end): they settle within a few
    calls and then run at a steady rate, and at small targets on SQLite a whole cleanup
    would take minutes. The engine at the large target and the big experiment run to the
    end: they show the whole cleanup, tail calls included.
    """
    if variant.name == hand_loop_name() and settings.engine_box:
        # Compared head to head with the default engine: measured over the same length.
        return settings.engine_box
    if _time_boxed(variant):
        return settings.time_box
    if variant.name == "engine-concurrent":
        return settings.concurrent_box or None
    large = engine_name(settings, settings.large_target)
    if variant.name.startswith("engine") and variant.name != large:
        return settings.engine_box or None
    return None


class BackendRun:
    """All the variants on one backend."""

    def __init__(self, backend: Backend, settings: Settings, log: Log) -> None:
        self.backend = backend
        self.settings = settings
        self.log = log
        self.experiment_ids: tuple[str, ...] = ()
        self.probe_experiment = ""
        self.seed_log: list[dict[str, Any]] = []
        self.big_experiment = ""
        self._restored_from: set[tuple[str, ...]] = set()

    @property
    def measure_only(self) -> bool:
        """A user's server without `--seed`: only the idle probe runs, nothing is deleted."""
        return self.backend.name == "external" and not self.settings.seed

    def _say(self, message: str) -> None:
        self.log(f"[bench {self.backend.name}] {message}")

    async def setup(self, *, seeded: bool = True) -> None:
        """Create the probe's experiment and, when `seeded`, the bench experiments.

        Without `seeded` (a user's server without `--seed`) only the probe's experiment is
        created, for the probe's own writes; nothing is seeded and nothing deleted.
        """
        run_id = uuid.uuid4().hex[:8]
        url = self.backend.base_url
        self.probe_experiment = await _create_experiment(url, f"bench-{run_id}-probe")
        self._say(f"probe experiment {self.probe_experiment} (the probe writes its traces there)")
        if not seeded:
            return
        ids = [
            await _create_experiment(url, f"bench-{run_id}-{index}")
            for index in range(self.settings.scenario.experiments)
        ]
        self.experiment_ids = tuple(ids)
        await self._seed_probe_experiment()

    async def prepare(self, *, seeded: bool = True) -> None:
        """Create and seed the main experiments (nothing is timed: backends may prepare at once)."""
        await self.setup(seeded=seeded)
        if seeded:
            await self.ensure_seeded(self.experiment_ids)

    async def prepare_big(self) -> None:
        """Create and seed the one big experiment (and the probe's, if this server has none)."""
        if not self.probe_experiment:
            await self.setup(seeded=False)
        name = f"bench-big-{uuid.uuid4().hex[:8]}"
        self.big_experiment = await _create_experiment(self.backend.base_url, name)
        await self.ensure_seeded([self.big_experiment], self.settings.big_old)

    async def _seed_probe_experiment(self) -> None:
        """Give the probe's searches the same rows to page through before every variant."""
        database = self.backend.database
        cutoff = self.settings.scenario.cutoff_ms
        # Through the API (a user's server) seeding is slow: a small page to search is enough.
        count = PROBE_EXPERIMENT_TRACES if self.backend.bulk_seeding else 20

        def reseed() -> None:
            database.delete_traces([self.probe_experiment])
            for batch in generate_rows(int(self.probe_experiment), "new", count, cutoff):
                database.insert(batch)

        await _in_thread(reseed)

    async def ensure_seeded(self, experiment_ids: Sequence[str], old: int | None = None) -> None:
        """Restore the seeded state, inserting exactly the traces the last variant deleted."""
        database = self.backend.database
        started = time.perf_counter()
        inserted = await _in_thread(
            lambda: restore(database, self.settings.scenario, experiment_ids, old=old)
        )
        elapsed = time.perf_counter() - started
        if not inserted:
            return
        how = "bulk SQL insert" if self.backend.bulk_seeding else "the REST API (slow)"
        if self.backend.bulk_seeding and tuple(experiment_ids) in self._restored_from:
            how += " / restore from the pristine copy"
        self._restored_from.add(tuple(experiment_ids))
        self.seed_log.append({"traces": inserted, "seconds": round(elapsed, 2)})
        self._say(
            f"seeded {inserted:,} traces by {how} in {elapsed:.1f} s"
            f" ({inserted / elapsed:,.0f} traces/s)"
        )
        await self._seed_probe_experiment()

    async def idle_probe(self) -> dict[str, LatencySummary]:
        """Probe the idle server: the latency other users see without any cleanup.

        A warm-up of the same traffic comes first, untimed: each of the server's uvicorn
        workers imports and connects lazily on its first requests, which took seconds with 4
        workers and would otherwise be charged to the idle baseline or the first variant.
        """
        for seconds, keep in ((WARM_UP_SECONDS, False), (self.settings.idle_seconds, True)):
            probe = Probe(
                self.backend.base_url, self.probe_experiment, self.settings.probe_interval
            )
            stop = anyio.Event()
            async with anyio.create_task_group() as group:
                group.start_soon(probe.run, stop)
                await anyio.sleep(seconds)
                stop.set()
            if keep:
                return {kind: probe.summary(None if kind == "all" else kind) for kind in _KINDS}
        raise AssertionError("unreachable: the second round returns")

    async def measure(
        self, variant: Variant, experiment_ids: Sequence[str], scenario_name: str
    ) -> VariantResult:
        """Run one variant with the probe alongside, then check the database."""
        result = VariantResult(variant.name, variant.description, "done", scenario_name)
        old = self.settings.big_old if scenario_name == "big" else None
        await self.ensure_seeded(experiment_ids, old)
        database = self.backend.database
        cutoff = self.settings.scenario.cutoff_ms
        before = await _in_thread(database.counts, experiment_ids, cutoff)
        result.old_before = sum(old_new[0] for old_new in before.values())
        result.new_before = sum(old_new[1] for old_new in before.values())
        target = Target(self.backend.base_url, tuple(experiment_ids), cutoff)
        time_box = time_box_for(self.settings, variant)
        probe = Probe(self.backend.base_url, self.probe_experiment, self.settings.probe_interval)
        stop = anyio.Event()
        self._say(f"{variant.name}: running" + (f" (time box {time_box:g} s)" if time_box else ""))
        probe_started = time.perf_counter()
        async with anyio.create_task_group() as group:
            group.start_soon(probe.run, stop)
            try:
                deadline = time.monotonic() + time_box if time_box else None
                with anyio.move_on_after(self.settings.variant_timeout) as scope:
                    result.run = await variant.run(target, deadline)
                if scope.cancelled_caught:
                    result.run.errors.append(
                        f"stopped after the {self.settings.variant_timeout:g} s variant timeout"
                    )
                    result.run.elapsed = time.perf_counter() - probe_started
            except Exception as error:  # a crashing variant is a result too
                result.run.errors.extend(_describe(error))
            finally:
                stop.set()
        result.probe_window = time.perf_counter() - probe_started
        result.probe = {kind: probe.summary(None if kind == "all" else kind) for kind in _KINDS}
        after = await _in_thread(database.counts, experiment_ids, cutoff)
        result.old_after = sum(old_new[0] for old_new in after.values())
        result.new_after = sum(old_new[1] for old_new in after.values())
        result.measured_deleted = result.old_before - result.old_after
        if result.run.time_boxed:
            result.status = "time-boxed"
            result.oldest_first = await _in_thread(
                lambda: deleted_oldest_first(
                    database, self.settings.scenario, experiment_ids, old=old
                )
            )
            if self.settings.clean_rest:
                await self._clean_rest(result, target)
        elif result.run.errors or result.old_after:
            result.status = "failed"
        result.orphans = await _in_thread(database.orphans)
        self._say(_one_line(result))
        return result

    async def _clean_rest(self, result: VariantResult, target: Target) -> None:
        """Delete what a time-boxed variant left, untimed, so 'old all gone' is still checked."""
        started = time.perf_counter()
        cleanup = await sequential_deletes(target, CLEANUP_BATCH, None)
        result.cleanup_seconds = time.perf_counter() - started
        counts = await _in_thread(
            self.backend.database.counts, target.experiment_ids, target.cutoff_ms
        )
        result.old_after_cleanup = sum(old for old, _ in counts.values())
        result.new_after = sum(new for _, new in counts.values())
        if cleanup.errors:
            result.note = f"cleanup errors: {cleanup.errors[:3]}"
        self._say(
            f"{result.name}: rest ({result.old_after:,} old traces) cleaned untimed in"
            f" {result.cleanup_seconds:.1f} s"
        )

    async def run_big(self) -> list[VariantResult]:
        """One experiment too big for a single call: the unbounded call, then the engine."""
        if not self.big_experiment:
            await self.prepare_big()
        big = self.big_experiment
        large = self.settings.large_target
        variants: list[Variant] = [
            Unbounded(
                name="unbounded-big",
                description=f"one unbounded call on {self.settings.big_old:,} old traces",
            ),
            EngineVariant(
                f"engine-{large:g}s-big",
                f"engine, target {large:g} s, on {self.settings.big_old:,} old traces",
                target_latency=large,
                max_concurrency=1,
            ),
        ]
        results = [await self.measure(variant, [big], "big") for variant in variants]
        await _in_thread(self.backend.database.delete_traces, [big])
        return results


_KINDS = ("all", "read", "write")


def _describe(error: BaseException) -> list[str]:
    """One line per leaf exception, task groups unwrapped (their own message says nothing)."""
    if isinstance(error, BaseExceptionGroup):
        return [line for inner in error.exceptions for line in _describe(inner)]
    return [f"{type(error).__name__}: {error}"]


def _one_line(result: VariantResult) -> str:
    throughput = result.throughput
    p99 = result.probe["all"].p99 if result.probe else None
    return (
        f"{result.name}: {result.status}, {result.measured_deleted:,} deleted in"
        f" {result.run.elapsed:.1f} s"
        + (f" = {throughput:,.0f} traces/s" if throughput is not None else "")
        + (f", probe p99 {p99 * 1000:,.0f} ms" if p99 is not None else "")
        + f", verified {result.verified}"
        + (f", errors: {result.run.errors[:2]}" if result.run.errors else "")
    )


async def preload_mlflow() -> None:
    """Import mlflow once, before any clock starts (the docs recipe uses its client)."""
    await _in_thread(importlib.import_module, "mlflow")
