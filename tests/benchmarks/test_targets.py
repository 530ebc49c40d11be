"""The targets table: the engine against the frontier at its own p99, and the hand-written loop."""

from __future__ import annotations

from benchmarks.probe import LatencySummary
from benchmarks.runner import VariantResult
from benchmarks.targets import evaluate, frontier_of
from benchmarks.variants import VariantRun


def _result(name: str, deleted: int, elapsed: float, p99: float) -> VariantResult:
    summary = LatencySummary(100, 100, 0, 0, p99 / 2, p99, p99)
    result = VariantResult(name, name, "done", "main", run=VariantRun(elapsed=elapsed))
    result.measured_deleted = deleted
    result.probe = {"all": summary, "read": summary, "write": summary}
    return result


def _checks(results: list[VariantResult]) -> dict[str, tuple[float | None, bool | None]]:
    checks = evaluate(
        "postgres",
        results,
        engine_names=["engine"],
        large_name="engine-5s",
        hand_loop="fixed-1000-sleep-0.1",
        foreground_budget=0.5,
    )
    return {check.name: (check.value, check.met) for check in checks}


def test_engine_is_compared_with_the_frontier_at_the_p99_it_produced() -> None:
    """Engine at p99 0.3 s between loops at (0.2 s, 1000/s) and (0.4 s, 3000/s): 2000/s there."""
    results = [
        _result("fixed-300-sleep-0.1", 1000, 1.0, 0.2),
        _result("fixed-1000-sleep-0.1", 3000, 1.0, 0.4),
        _result("fixed-3000-sleep-0", 2000, 1.0, 0.9),  # dominated
        _result("engine", 1900, 1.0, 0.3),
    ]
    assert [point.name for point in frontier_of(results)] == [
        "fixed-300-sleep-0.1",
        "fixed-1000-sleep-0.1",
    ]
    checks = _checks(results)
    value, met = checks["engine / frontier at its p99"]
    assert value is not None
    assert abs(value - 0.95) < 1e-9
    assert met is True
    assert checks["engine foreground read p99 (s) within the 0.5 s budget"] == (0.3, True)
    hand_value, hand_met = checks["engine / fixed-1000-sleep-0.1 (the hand-written loop)"]
    assert hand_value is not None
    assert abs(hand_value - 1900 / 3000) < 1e-9
    assert hand_met is False


def test_an_engine_gentler_than_every_loop_has_no_comparison() -> None:
    """Below the frontier's lowest p99 the ratio is unknown (n/a), not a made-up number."""
    results = [_result("fixed-300-sleep-0", 1000, 1.0, 0.2), _result("engine", 500, 1.0, 0.1)]
    assert _checks(results)["engine / frontier at its p99"] == (None, None)
