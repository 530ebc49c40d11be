"""The frontier of hand-written loops: the best throughput a fixed loop reached per foreground p99.

Each fixed (batch size x pause) loop gives one point (foreground p99, throughput). A point is on
the Pareto frontier when no other point has a lower-or-equal p99 and a higher throughput. Between
two frontier points the frontier is drawn straight (a user could alternate the two loops); past
its slowest point it stays flat (more latency buys nothing); below its fastest-answering point
it is undefined: no fixed loop was that gentle, so there is nothing to compare with.

Pure functions of numbers: no I/O, tested with plain values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise


@dataclass(frozen=True)
class Point:
    """One loop's result: foreground p99 (s), throughput (traces/s), and its name."""

    p99: float
    throughput: float
    name: str = ""


def pareto_frontier(points: Iterable[Point]) -> list[Point]:
    """The points no other point beats on both axes, by increasing p99 (and throughput)."""
    frontier: list[Point] = []
    for point in sorted(points, key=lambda p: (p.p99, -p.throughput)):
        if not frontier or point.throughput > frontier[-1].throughput:
            frontier.append(point)
    return frontier


def throughput_at(frontier: list[Point], p99: float) -> float | None:
    """The frontier's throughput at foreground p99 `p99`, interpolated linearly.

    Returns:
        None when `p99` is below the frontier's lowest p99 (no loop was that gentle);
        the highest throughput past its highest p99.
    """
    if not frontier or p99 < frontier[0].p99:
        return None
    for left, right in pairwise(frontier):
        if left.p99 <= p99 <= right.p99:
            if right.p99 == left.p99:
                return right.throughput
            share = (p99 - left.p99) / (right.p99 - left.p99)
            return left.throughput + share * (right.throughput - left.throughput)
    return frontier[-1].throughput
