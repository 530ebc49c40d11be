"""The frontier of fixed loops and its interpolation, on plain numbers."""

from __future__ import annotations

import pytest

from benchmarks.frontier import Point, pareto_frontier, throughput_at


def test_dominated_points_leave_the_frontier() -> None:
    """A loop slower and harsher than another is not on the frontier; the rest are, by p99."""
    points = [
        Point(0.5, 1000, "a"),
        Point(0.2, 400, "b"),
        Point(0.6, 900, "dominated by a"),
        Point(2.0, 3000, "c"),
        Point(0.2, 300, "dominated by b"),
    ]
    assert [p.name for p in pareto_frontier(points)] == ["b", "a", "c"]


def test_throughput_is_interpolated_between_frontier_points() -> None:
    """Halfway in p99 between two frontier points is halfway in throughput."""
    frontier = pareto_frontier([Point(1.0, 1000), Point(3.0, 3000)])
    assert throughput_at(frontier, 2.0) == pytest.approx(2000)
    assert throughput_at(frontier, 1.0) == pytest.approx(1000)


def test_frontier_is_flat_past_its_last_point_and_undefined_before_its_first() -> None:
    """More latency than any loop buys nothing more; less than every loop has no comparison."""
    frontier = pareto_frontier([Point(1.0, 1000), Point(3.0, 3000)])
    assert throughput_at(frontier, 10.0) == 3000
    assert throughput_at(frontier, 0.5) is None
    assert throughput_at([], 1.0) is None
