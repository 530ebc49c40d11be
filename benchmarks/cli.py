"""`python -m benchmarks`: parse arguments, start the backends, run, write JSON/PNG, print."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import anyio

from benchmarks.backends import Backend, external_backend, open_backends
from benchmarks.markdown import render
from benchmarks.report import (
    SEEDING_NOTE,
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
from benchmarks.scenario import Scenario
from benchmarks.targets import evaluate, frontier_of

DEFAULTS: dict[str, dict[str, Any]] = {
    "default": {
        "experiments": 4,
        "old": 10_000,
        "new": 1_000,
        "time_box": 4.0,
        "engine_box": 20.0,
        "concurrent_box": 20.0,
        "grid_sizes": "300,1000,3000,10000",
        "grid_pauses": "0,0.1,1",
        "big_old": 0,
        "idle_seconds": 3.0,
        "variant_timeout": 600.0,
        "clean_rest": False,
    },
    "full": {
        "experiments": 8,
        "old": 25_000,
        "new": 2_000,
        "time_box": 10.0,
        "engine_box": 0.0,
        "concurrent_box": 0.0,
        "grid_sizes": "100,300,1000,3000,10000,30000",
        "grid_pauses": "0,0.1,0.3,1,3",
        "big_old": 300_000,
        "idle_seconds": 5.0,
        "variant_timeout": 1800.0,
        "clean_rest": False,
    },
    "quick": {
        "experiments": 2,
        "old": 2_000,
        "new": 200,
        "time_box": 2.0,
        "engine_box": 0.0,
        "concurrent_box": 0.0,
        "grid_sizes": "300,3000",
        "grid_pauses": "0",
        "big_old": 3_000,
        "idle_seconds": 2.0,
        "variant_timeout": 60.0,
        "clean_rest": True,
    },
}


def _sizes(text: str) -> tuple[int, ...]:
    sizes = tuple(int(part) for part in text.split(",") if part.strip())
    if any(size <= 0 for size in sizes):
        raise argparse.ArgumentTypeError("batch sizes must be positive")
    return sizes


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _seconds(text: str) -> tuple[float, ...]:
    values = tuple(float(part) for part in text.split(",") if part.strip())
    if any(value < 0 for value in values):
        raise argparse.ArgumentTypeError("seconds must not be negative")
    return values


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Compare ways of deleting an MLflow trace backfill (MLflow's docs recipe, a grid of "
            "'batch N, sleep S' loops, one unbounded call, this engine at three latency "
            "targets) on real mlflow servers, with a probe client measuring what other users "
            "pay. " + SEEDING_NOTE
        ),
    )
    scale = p.add_mutually_exclusive_group()
    scale.add_argument(
        "--quick", action="store_true", help="small scale (< 2 min), for smoke tests"
    )
    scale.add_argument(
        "--full",
        action="store_true",
        help="the whole grid (6 sizes x 5 pauses), 8 x 25,000 traces, nothing boxed but the "
        "fixed loops (10 s), the big experiment on SQLite (about an hour)",
    )
    p.add_argument(
        "--backends",
        type=_names,
        default=("sqlite", "postgres", "mysql"),
        help="sqlite,postgres,mysql (default all three)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=4,
        help="uvicorn workers of each local mlflow server (default 4, mlflow server's own)",
    )
    p.add_argument("--experiments", type=int, help="K experiments (default 4; full 8)")
    p.add_argument("--old", type=int, help="N old traces per experiment (default 10000)")
    p.add_argument("--new", type=int, help="M new traces per experiment that must survive")
    p.add_argument(
        "--variants",
        type=_names,
        help="comma list of variant names (docs-recipe, fixed, fixed-1000-sleep-0.1, "
        "unbounded, engine, engine-0.25s, engine-5s, engine-concurrent, engine-budget); "
        "default all",
    )
    p.add_argument(
        "--grid-sizes", type=_sizes, help="batch sizes of the fixed loops, e.g. 300,3000,30000"
    )
    p.add_argument(
        "--grid-pauses",
        type=_seconds,
        help="pauses (s) of the fixed loops, e.g. 0,0.1,1; 1000 / 0.1 s always runs",
    )
    p.add_argument(
        "--time-box",
        type=float,
        help="seconds for the docs recipe and the fixed loops (default 4, full 10, quick 2): "
        "their rate within the box is a steady rate",
    )
    p.add_argument(
        "--engine-box",
        type=float,
        help="time box of the engine below the large target and of engine-budget, stopped "
        "with Engine.stop_all() (default 20 s; 0 = run to the end, as with --quick/--full)",
    )
    p.add_argument(
        "--concurrent-box",
        type=float,
        help="time box of engine-concurrent (default 20 s; 0 = run to the end)",
    )
    p.add_argument("--target-latency", type=float, default=1.0, help="engine default target (s)")
    p.add_argument(
        "--engine-targets",
        type=_seconds,
        default=(0.25, 1.0, 5.0),
        help="latency targets the engine runs at (default 0.25,1,5)",
    )
    p.add_argument("--large-target", type=float, default=5.0, help="the large target (s)")
    p.add_argument(
        "--foreground-budget",
        type=float,
        default=0.5,
        help="p99 (s) other clients may see: engine-budget's foreground_budget and the "
        "budget the default engine is checked against (default 0.5)",
    )
    p.add_argument(
        "--big",
        type=int,
        help="old traces of the one big experiment (0 = skip; default 0, full 300000, quick 3000)",
    )
    p.add_argument(
        "--big-backends",
        type=_names,
        default=("sqlite",),
        help="backends that run the big experiment (default sqlite, where one call fails)",
    )
    p.add_argument("--tracking-uri", help="measure a running server instead of starting ones")
    p.add_argument(
        "--seed",
        action="store_true",
        help="with --tracking-uri: create and seed experiments through the API (slow)",
    )
    p.add_argument("--output", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib needed)")
    p.add_argument("--idle-seconds", type=float, help="idle probe before the variants")
    p.add_argument("--probe-interval", type=float, default=0.05, help="seconds between probes")
    p.add_argument("--variant-timeout", type=float, help="hard stop of one variant (s)")
    p.add_argument(
        "--clean-rest",
        action=argparse.BooleanOptionalAction,
        help="after a time box, delete the rest untimed and check 'old all gone' (default: "
        "on with --quick; off at full scale, where it would cost minutes)",
    )
    return p


def settings_from(args: argparse.Namespace) -> Settings:
    """Merge the mode's defaults with explicit arguments."""
    mode = "quick" if args.quick else "full" if args.full else "default"
    defaults = DEFAULTS[mode]
    scale_given = any(
        getattr(args, key) is not None
        for key in ("experiments", "old", "new", "grid_sizes", "grid_pauses", "time_box", "big")
    )
    if args.tracking_uri:
        mode = "external"
    elif scale_given:
        mode = f"{mode}-custom"

    def pick(key: str) -> Any:
        value = getattr(args, key)
        return defaults[key] if value is None else value

    return Settings(
        mode=mode,
        backends=("external",) if args.tracking_uri else tuple(args.backends),
        scenario=Scenario(pick("experiments"), pick("old"), pick("new")),
        variants=args.variants,
        grid_sizes=args.grid_sizes or _sizes(defaults["grid_sizes"]),
        grid_pauses=args.grid_pauses or _seconds(defaults["grid_pauses"]),
        time_box=pick("time_box"),
        engine_box=pick("engine_box"),
        concurrent_box=pick("concurrent_box"),
        target_latency=args.target_latency,
        engine_targets=tuple(args.engine_targets),
        large_target=args.large_target,
        foreground_budget=args.foreground_budget,
        workers=args.workers,
        big_old=defaults["big_old"] if args.big is None else args.big,
        big_backends=tuple(args.big_backends),
        tracking_uri=args.tracking_uri,
        seed=args.seed,
        output=args.output,
        plot=not args.no_plot,
        idle_seconds=pick("idle_seconds"),
        probe_interval=args.probe_interval,
        variant_timeout=pick("variant_timeout"),
        clean_rest=pick("clean_rest"),
    )


def log(message: str) -> None:
    """Progress to stderr, so stdout holds only the result tables."""
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


async def run_backend(run: BackendRun, big_run: BackendRun | None) -> dict[str, Any]:
    """Every variant on one (prepared) backend; returns its section of the document."""
    settings = run.settings
    backend = run.backend
    idle = await run.idle_probe()
    results: list[VariantResult] = []
    skipped: list[dict[str, str]] = []
    if run.measure_only:
        log("[bench external] no --seed: measured the idle probe only; nothing is deleted")
    else:
        for variant in build_variants(settings):
            reason = variant.skip_reason()
            if reason is not None:
                log(f"[bench {backend.name}] {variant.name}: skipped: {reason}")
                skipped.append({"name": variant.name, "reason": reason})
                continue
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
    section["skipped"] = skipped
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
        "skipped": [],
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
