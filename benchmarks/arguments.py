"""The command line of `python -m benchmarks`: the modes' defaults, the flags, the `Settings`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks.report import SEEDING_NOTE
from benchmarks.runner import Settings
from benchmarks.scenario import Scenario

DEFAULTS: dict[str, dict[str, Any]] = {
    "default": {
        "experiments": 4,
        "old": 10_000,
        "new": 1_000,
        "time_box": 4.0,
        "engine_box": 15.0,
        "concurrent_box": 15.0,
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
        "their rate within the box is a steady rate; the hand-written loop "
        "(fixed-1000-sleep-0.1) takes the engine's box when there is one",
    )
    p.add_argument(
        "--engine-box",
        type=float,
        help="time box of the engine below the large target, of engine-budget and of the "
        "hand-written loop they are compared with, the engines stopped with "
        "Engine.stop_all() (default 15 s; 0 = run to the end, as with --quick/--full)",
    )
    p.add_argument(
        "--concurrent-box",
        type=float,
        help="time box of engine-concurrent (default 15 s; 0 = run to the end)",
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
