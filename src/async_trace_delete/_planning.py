"""Dry runs and verification: what a job would delete, and what it left, counted by search.

Both read the server only (search), never delete. A plan counts exactly what a resolved
spec matches now — for a cutoff ``timestamp_ms <= cutoff``, for a selective job its filter
(AND the cutoff), for IDs the IDs that exist — keeping only a small sample, so memory stays
flat however many traces match.
"""

from __future__ import annotations

import functools
import heapq

from pydantic import BaseModel, ConfigDict

from ._client import TraceSummary
from ._modes import TraceSearcher, mode_of
from ._specs import JobMode, ResolvedSpec

__all__ = [
    "JobPlan",
    "PlanReport",
    "SampleTrace",
    "TraceSearcher",
    "count_remaining",
    "plan_job",
]


@functools.total_ordering
class _Descending:
    """Reverses the order of a string, for a max-heap keyed on (timestamp, ID)."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.value == other.value

    def __lt__(self, other: _Descending) -> bool:
        return self.value > other.value

    def __hash__(self) -> int:
        return hash(self.value)


class SampleTrace(BaseModel):
    """One trace a job would delete."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trace_id: str
    timestamp_ms: int
    state: str


class JobPlan(BaseModel):
    """What one job would delete if run now.

    Attributes:
        would_delete: Exact count (capped by ``max_traces``).
        matched: Traces matching before the cap.
        sample: The oldest few that would go.
        oldest_ms / newest_ms: Timestamps of the oldest and newest that would go.
        requested_ids: For ID jobs, how many distinct IDs were given.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str
    experiment_id: str
    mode: JobMode
    cutoff_millis: int | None
    filter_string: str | None
    max_traces: int | None
    would_delete: int
    matched: int
    requested_ids: int | None
    sample: tuple[SampleTrace, ...]
    oldest_ms: int | None
    newest_ms: int | None


class PlanReport(BaseModel):
    """A dry run of several jobs. Nothing was deleted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    jobs: tuple[JobPlan, ...]

    @property
    def would_delete(self) -> int:
        """Total over all jobs."""
        return sum(job.would_delete for job in self.jobs)


async def plan_job(
    client: TraceSearcher, resolved: ResolvedSpec, *, sample_size: int = 10, page_size: int = 500
) -> JobPlan:
    """Count exactly what ``resolved`` would delete now, with a sample. Sends no delete."""
    spec = resolved.spec
    cap = spec.max_traces
    matched = 0
    # The `sample_size` oldest, kept in a bounded max-heap on (timestamp, ID): ID jobs are
    # searched in the order the IDs were given, not oldest first.
    heap: list[tuple[int, _Descending, TraceSummary]] = []
    oldest: int | None = None
    newest: int | None = None
    async for trace in mode_of(spec).matching(client, resolved, page_size):
        matched += 1
        if cap is not None and matched > cap:
            continue  # counted as matched, but past the cap: would not be deleted
        if sample_size > 0:
            entry = (-trace.timestamp_ms, _Descending(trace.trace_id), trace)
            if len(heap) < sample_size:
                heapq.heappush(heap, entry)
            elif entry > heap[0]:
                heapq.heapreplace(heap, entry)
        oldest = trace.timestamp_ms if oldest is None else min(oldest, trace.timestamp_ms)
        newest = trace.timestamp_ms if newest is None else max(newest, trace.timestamp_ms)
    sample = [
        SampleTrace(trace_id=trace.trace_id, timestamp_ms=trace.timestamp_ms, state=trace.state)
        for trace in sorted((item[2] for item in heap), key=lambda t: (t.timestamp_ms, t.trace_id))
    ]
    return JobPlan(
        label=resolved.label,
        experiment_id=resolved.experiment_id,
        mode=spec.mode,
        cutoff_millis=resolved.cutoff_millis,
        filter_string=spec.filter_string,
        max_traces=cap,
        would_delete=matched if cap is None else min(matched, cap),
        matched=matched,
        requested_ids=len(spec.trace_ids) if spec.trace_ids is not None else None,
        sample=tuple(sample),
        oldest_ms=oldest,
        newest_ms=newest,
    )


async def count_remaining(
    client: TraceSearcher, resolved: ResolvedSpec, page_size: int = 500
) -> int:
    """How many traces the spec still matches on the server (ignoring its cap)."""
    count = 0
    async for _ in mode_of(resolved.spec).matching(client, resolved, page_size):
        count += 1
    return count
