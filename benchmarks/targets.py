"""The issue's targets, as ratios measured in the same run; reported, never asserted.

The foreground p99 everywhere is the probe's, over reads and writes together, stalled ticks
included (see `benchmarks.probe`), unless a target names reads or writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks.frontier import Point, pareto_frontier, throughput_at
from benchmarks.runner import VariantResult
from benchmarks.variants import peak_in_flight

FRONTIER_SHARE = 0.9
DOCS_FACTOR = 10.0
HAND_LOOP_FACTOR = 1.2
UNBOUNDED_SHARE = 0.95
PARALLEL_FACTOR = 1.2


@dataclass(frozen=True)
class TargetCheck:
    """One target: the measured value, the threshold, and whether it was met."""

    name: str
    value: float | None
    threshold: str
    met: bool | None
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "value": self.value,
            "threshold": self.threshold,
            "met": self.met,
            "detail": self.detail,
        }


def mean_in_flight(result: VariantResult) -> float | None:
    """Time-weighted mean of delete calls in flight over the variant's run."""
    if not result.run.calls or result.run.elapsed <= 0:
        return None
    return sum(call.latency for call in result.run.calls) / result.run.elapsed


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _at_least(name: str, value: float | None, threshold: float, detail: str = "") -> TargetCheck:
    met = None if value is None else value >= threshold
    return TargetCheck(name, value, f">= {threshold:g}", met, detail)


def _at_most(name: str, value: float | None, threshold: float, detail: str = "") -> TargetCheck:
    met = None if value is None else value <= threshold
    return TargetCheck(name, value, f"<= {threshold:g}", met, detail)


def p99(result: VariantResult | None, kind: str = "all") -> float | None:
    """The probe's p99 (s) during `result`, over `kind` ("all", "read", "write")."""
    if result is None or kind not in result.probe:
        return None
    return result.probe[kind].p99


def _throughput(result: VariantResult | None) -> float | None:
    return None if result is None else result.throughput


def frontier_of(results: list[VariantResult]) -> list[Point]:
    """The Pareto frontier of the fixed loops of the main scenario."""
    points = [
        Point(value, result.throughput, result.name)
        for result in results
        if result.scenario == "main"
        and result.name.startswith("fixed-")
        and result.status != "failed"
        and result.throughput is not None
        and (value := p99(result)) is not None
    ]
    return pareto_frontier(points)


def frontier_check(name: str, result: VariantResult | None, frontier: list[Point]) -> TargetCheck:
    """`result`'s throughput against the frontier's at the p99 `result` produced."""
    at = p99(result)
    reference = None if at is None else throughput_at(frontier, at)
    detail = (
        "not run"
        if result is None
        else f"p99 {_fmt(at)} s; frontier there {_fmt(reference, 0)} traces/s"
        + (
            " (below every fixed loop's p99: no comparison)"
            if at is not None and reference is None
            else ""
        )
    )
    return _at_least(
        f"{name} / frontier at its p99",
        _ratio(_throughput(result), reference),
        FRONTIER_SHARE,
        detail,
    )


def evaluate(
    backend: str,
    results: list[VariantResult],
    *,
    engine_names: list[str],
    large_name: str,
    hand_loop: str,
    foreground_budget: float,
) -> list[TargetCheck]:
    """Compute every target of the issue that the run has the variants for."""
    by_name = {result.name: result for result in results if result.scenario == "main"}
    big = {result.name: result for result in results if result.scenario == "big"}
    docs = by_name.get("docs-recipe")
    unbounded = by_name.get("unbounded")
    engine = by_name.get("engine")
    budget_engine = by_name.get("engine-budget")
    hand = by_name.get(hand_loop)
    frontier = frontier_of(results)
    checks = [frontier_check(name, by_name.get(name), frontier) for name in engine_names]
    if budget_engine is not None:
        checks.append(frontier_check("engine-budget", budget_engine, frontier))
    for label, result in (("engine", engine), ("engine-budget", budget_engine)):
        if result is None:
            continue
        for kind in ("read", "write"):
            checks.append(
                _at_most(
                    f"{label} foreground {kind} p99 (s) within the {foreground_budget:g} s budget",
                    p99(result, kind),
                    foreground_budget,
                )
            )
    checks.append(
        _at_least(
            f"{large_name} / unbounded",
            _ratio(_throughput(by_name.get(large_name)), _throughput(unbounded)),
            UNBOUNDED_SHARE,
        )
    )
    checks.append(
        _at_least(
            "engine / docs recipe", _ratio(_throughput(engine), _throughput(docs)), DOCS_FACTOR
        )
    )
    checks.append(
        _at_least(
            f"engine / {hand_loop} (the hand-written loop)",
            _ratio(_throughput(engine), _throughput(hand)),
            HAND_LOOP_FACTOR,
        )
    )
    checks.append(
        _at_most(
            f"engine p99 / {hand_loop} p99 (no worse for other clients)",
            _ratio(p99(engine), p99(hand)),
            1.0,
            f"engine {_fmt(p99(engine))} s, loop {_fmt(p99(hand))} s",
        )
    )
    checks.extend(_big_checks(big, large_name))
    checks.append(_parallel_check(backend, by_name, unbounded, engine))
    return checks


def _big_checks(big: dict[str, VariantResult], large_name: str) -> list[TargetCheck]:
    unbounded_big = big.get("unbounded-big")
    engine_big = big.get(f"{large_name}-big")
    if unbounded_big is None or engine_big is None:
        return []
    engine_done = engine_big.status == "done" and bool(engine_big.verified)
    unbounded_failed = unbounded_big.status == "failed"
    return [
        TargetCheck(
            f"{large_name} completes the big experiment the unbounded call cannot",
            None,
            "engine done, unbounded failed",
            engine_done and unbounded_failed,
            f"engine: {engine_big.status}; unbounded: {unbounded_big.status}"
            + (f" ({unbounded_big.run.errors[0][:120]})" if unbounded_big.run.errors else ""),
        )
    ]


def _parallel_check(
    backend: str,
    by_name: dict[str, VariantResult],
    unbounded: VariantResult | None,
    engine: VariantResult | None,
) -> TargetCheck:
    concurrent = by_name.get("engine-concurrent")
    in_flight = None if concurrent is None else mean_in_flight(concurrent)
    peak = None if concurrent is None else peak_in_flight(concurrent.run.calls)
    detail = (
        ""
        if in_flight is None
        else f"mean {in_flight:.2f} / peak {peak} calls in flight;"
        f" vs engine in turn {_fmt(_ratio(_throughput(concurrent), _throughput(engine)))}x;"
        f" p99 {_fmt(p99(concurrent))} s"
    )
    if backend == "sqlite":
        # Parallelism does not pay on SQLite (one writer): the controller should stay near 1.
        return _at_most(
            "engine-concurrent mean calls in flight (parallelism does not pay on SQLite)",
            in_flight,
            1.25,
            detail,
        )
    return _at_least(
        "engine-concurrent (experiments in parallel) / unbounded in turn",
        _ratio(_throughput(concurrent), _throughput(unbounded)),
        PARALLEL_FACTOR,
        detail,
    )


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"
