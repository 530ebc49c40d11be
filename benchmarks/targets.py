"""The issue's targets, as ratios measured in the same run; reported, never asserted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks.runner import VariantResult
from benchmarks.variants import peak_in_flight

P99_BUDGET_FACTOR = 1.5


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


def _p99(result: VariantResult | None) -> float | None:
    if result is None or "all" not in result.probe:
        return None
    return result.probe["all"].p99


def evaluate(
    backend: str,
    results: list[VariantResult],
    *,
    target_latency: float,
    large_target: float,
) -> list[TargetCheck]:
    """Compute every target of the issue that the run has the variants for."""
    by_name = {result.name: result for result in results if result.scenario == "main"}
    big = {result.name: result for result in results if result.scenario == "big"}
    docs = by_name.get("docs-recipe")
    unbounded = by_name.get("unbounded")
    engine = by_name.get("engine")
    concurrent = by_name.get("engine-concurrent")
    large = by_name.get(f"engine-{large_target:g}s")
    budget = P99_BUDGET_FACTOR * target_latency

    def throughput(result: VariantResult | None) -> float | None:
        return None if result is None else result.throughput

    checks = [
        _at_least("engine / docs recipe", _ratio(throughput(engine), throughput(docs)), 10),
        _at_least("engine / unbounded", _ratio(throughput(engine), throughput(unbounded)), 0.75),
    ]
    engine_p99 = _p99(engine)
    checks.append(
        TargetCheck(
            f"engine probe p99 (s) <= {P99_BUDGET_FACTOR:g} x target",
            engine_p99,
            f"<= {budget:g}",
            None if engine_p99 is None else engine_p99 <= budget,
        )
    )
    fixed_in_budget = [
        r
        for r in by_name.values()
        if r.name.startswith("fixed-") and (p99 := _p99(r)) is not None and p99 <= budget
    ]
    best = max(fixed_in_budget, key=lambda r: r.throughput or 0.0, default=None)
    checks.append(
        _at_least(
            "engine / best fixed batch within the p99 budget",
            _ratio(throughput(engine), throughput(best)),
            0.9,
            "no fixed batch met the budget" if best is None else f"best: {best.name}",
        )
    )
    checks.append(
        _at_least(
            f"engine-{large_target:g}s / unbounded",
            _ratio(throughput(large), throughput(unbounded)),
            0.95,
        )
    )
    unbounded_big = big.get("unbounded-big")
    engine_big = big.get(f"engine-{large_target:g}s-big")
    if unbounded_big is not None and engine_big is not None:
        engine_done = engine_big.status == "done" and bool(engine_big.verified)
        unbounded_failed = unbounded_big.status == "failed"
        checks.append(
            TargetCheck(
                f"engine-{large_target:g}s completes the big experiment the unbounded call cannot",
                None,
                "engine done, unbounded failed",
                engine_done and unbounded_failed,
                f"engine: {engine_big.status}; unbounded: {unbounded_big.status}"
                + (f" ({unbounded_big.run.errors[0][:120]})" if unbounded_big.run.errors else ""),
            )
        )
    parallel = _ratio(throughput(concurrent), throughput(unbounded))
    in_flight = None if concurrent is None else mean_in_flight(concurrent)
    peak = None if concurrent is None else peak_in_flight(concurrent.run.calls)
    detail = (
        ""
        if in_flight is None
        else f"mean {in_flight:.2f} / peak {peak} calls in flight;"
        f" vs engine in turn {_fmt(_ratio(throughput(concurrent), throughput(engine)))}x;"
        f" probe p99 {_fmt(_p99(concurrent))} s"
    )
    if backend == "sqlite":
        # Parallelism does not pay on SQLite: the adaptive controller should stay near 1.
        checks.append(
            TargetCheck(
                "engine-concurrent keeps ~1 call in flight (parallelism does not pay)",
                in_flight,
                "<= 1.25 mean in flight",
                None if in_flight is None else in_flight <= 1.25,
                detail,
            )
        )
    else:
        checks.append(_at_least("engine-concurrent / unbounded", parallel, 1.2, detail))
    return checks


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
