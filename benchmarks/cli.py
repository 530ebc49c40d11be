"""`python -m benchmarks`: parse arguments, start the backends, run, write JSON/PNG, print."""

from __future__ import annotations

import importlib
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from types import FrameType
from typing import Any

import anyio

from benchmarks.arguments import parser, settings_from
from benchmarks.backends import Backend, external_backend, open_backends
from benchmarks.markdown import render
from benchmarks.report import (
    backend_json,
    document,
    seeding_note,
    table,
    targets_text,
    time_box_note,
    write_json,
)
from benchmarks.runner import (
    BackendRun,
    Settings,
    VariantResult,
    build_variants,
    engine_name,
    hand_loop_name,
    preload_mlflow,
)
from benchmarks.targets import evaluate, frontier_of


def log(message: str) -> None:
    """Progress to stderr, so stdout holds only the result tables."""
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


async def run_backend(run: BackendRun, big_run: BackendRun | None) -> dict[str, Any]:
    """Every variant on one (prepared) backend; returns its section of the document."""
    settings = run.settings
    backend = run.backend
    idle = await run.idle_probe()
    results: list[VariantResult] = []
    if run.measure_only:
        log("[bench external] no --seed: measured the idle probe only; nothing is deleted")
    else:
        for variant in build_variants(settings):
            results.append(await run.measure(variant, run.experiment_ids, "main"))
        if big_run is not None:
            results.extend(await big_run.run_big())
    checks = evaluate(
        backend.name,
        results,
        engine_names=[engine_name(settings, target) for target in settings.engine_targets],
        large_name=engine_name(settings, settings.large_target),
        hand_loop=hand_loop_name(),
        foreground_budget=settings.foreground_budget,
    )
    info = dict(backend.info)
    seed_log = list(run.seed_log)
    if big_run is not None and big_run is not run:
        info["big_experiment_server"] = big_run.backend.info
        seed_log += big_run.seed_log
    section = backend_json(backend.name, info, idle, results, checks, seed_log)
    section["frontier"] = [
        {"name": point.name, "p99_s": point.p99, "throughput_per_s": point.throughput}
        for point in frontier_of(results)
    ]
    return section


async def run_all(
    backends: Sequence[Backend], settings: Settings, big_servers: Mapping[str, Backend]
) -> list[dict[str, Any]]:
    """Seed every backend at once (nothing is timed yet), then measure them one after another.

    Measuring is never parallel: the backends would share the 2 cores. Seeding is, because it
    is only setup; a big experiment with a server of its own is seeded then too.
    """
    await preload_mlflow()
    runs = [BackendRun(backend, settings, log) for backend in backends]
    big_runs: list[BackendRun | None] = []
    for run in runs:
        own = big_servers.get(run.backend.name)
        wants_big = settings.runs_big(run.backend.name)
        big_runs.append(None if not wants_big else BackendRun(own, settings, log) if own else run)
    failed: dict[str, str] = {}

    async def prepare(name: str, step: Callable[[], Awaitable[None]]) -> None:
        # A backend that fails its setup is reported; the others go on (issue 17).
        try:
            await step()
        except Exception as error:
            log(f"[bench {name}] setup failed, reported and left out: {error!r}")
            failed.setdefault(name, f"setup failed: {type(error).__name__}: {error}")

    async with anyio.create_task_group() as group:
        for run in runs:
            group.start_soon(
                prepare, run.backend.name, partial(run.prepare, seeded=not run.measure_only)
            )
        for run, big_run in zip(runs, big_runs, strict=True):
            if big_run is not None and big_run is not run:
                group.start_soon(prepare, run.backend.name, big_run.prepare_big)
    return [
        unavailable_section(run.backend.name, failed[run.backend.name])
        if run.backend.name in failed
        else await run_backend(run, big_run)
        for run, big_run in zip(runs, big_runs, strict=True)
    ]


def unavailable_section(name: str, error: str) -> dict[str, Any]:
    """The section of a backend that could not start: its error, no figures."""
    return {
        "backend": name,
        "server": {"error": error},
        "unavailable": error,
        "idle_probe": {},
        "seeding": [],
        "variants": [],
        "targets": [],
        "frontier": [],
    }


def _interrupt_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so the servers and the cluster are stopped."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (1 when a variant failed verification)."""
    args = parser().parse_args(argv)
    _interrupt_on_sigterm()
    settings = settings_from(args)
    if args.seed and not args.tracking_uri:
        parser().error("--seed only applies with --tracking-uri")
    started = time.perf_counter()
    # Import mlflow (seconds) while the servers start; the docs recipe needs its client.
    threading.Thread(target=importlib.import_module, args=("mlflow",), daemon=True).start()
    log(
        f"scenario: {settings.scenario.experiments} experiments x {settings.scenario.old:,} old"
        f" + {settings.scenario.new:,} new traces; backends {', '.join(settings.backends)}"
    )
    log(seeding_note(settings))
    if settings.tracking_uri:
        sections = anyio.run(run_all, [external_backend(settings.tracking_uri)], settings, {})
    else:
        big = [name for name in settings.backends if settings.runs_big(name)]
        failures: dict[str, str] = {}
        with open_backends(
            settings.backends, big=big, workers=settings.workers, failures=failures
        ) as (backends, big_servers):
            for name, error in failures.items():
                log(f"[bench {name}] could not start, reported and left out: {error}")
            for backend in backends:
                log(f"[bench {backend.name}] server at {backend.base_url}: {backend.info}")
            for name, backend in big_servers.items():
                log(
                    f"[bench {name}] big experiment's own server at {backend.base_url}:"
                    f" {backend.info}"
                )
            sections = anyio.run(run_all, backends, settings, big_servers)
        sections += [unavailable_section(name, error) for name, error in failures.items()]
    wall = time.perf_counter() - started
    doc = document(settings, sections, wall)
    json_path = settings.output / f"{settings.mode}.json"
    write_json(doc, json_path)
    json_path.with_suffix(".md").write_text(render(doc), encoding="utf-8")
    if settings.plot:
        from benchmarks.plot import write_plot

        write_plot(doc, settings.output / f"{settings.mode}.png")
    machine = doc["machine"]
    print(
        f"async-trace-delete benchmark, mode {settings.mode}: {machine['cpu_count']} CPUs"
        f" ({machine['cpu_model']}), {machine['memory_gb']} GB, Python {machine['python']},"
        f" mlflow {machine['mlflow']}; wall {wall:.0f} s; {settings.workers} uvicorn workers"
    )
    print(
        f"scenario: {settings.scenario.experiments} experiments x {settings.scenario.old:,} old"
        f" + {settings.scenario.new:,} new; engine target {settings.target_latency:g} s;"
        f" time box {settings.time_box:g} s"
    )
    print(seeding_note(settings))
    print(time_box_note(settings))
    for section in sections:
        print(f"\n== {section['backend']} ({section['server'].get('backend_uri', '')})")
        if section.get("unavailable"):
            print(f"not measured: {section['unavailable']}")
            continue
        print(table(section))
        print("targets (ratios from this run):")
        print(targets_text(section))
    written = [json_path, json_path.with_suffix(".md")]
    if settings.plot:
        written.append(json_path.with_suffix(".png"))
    print("\nwrote " + ", ".join(str(path) for path in written))
    failed = [
        f"{section['backend']}/{variant['name']}"
        for section in sections
        for variant in section["variants"]
        if variant["verification"]["verified"] is False
    ]
    if failed:
        print(f"VERIFICATION FAILED: {', '.join(failed)}")
        return 1
    return 0
