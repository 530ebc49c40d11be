"""Dry runs and verification: what a job would delete, and what it left.

Both read the server only (counts and searches), never delete. A plan counts exactly what a resolved
spec matches now — for a cutoff ``timestamp_ms <= cutoff``, for a selective job its filter
(AND the cutoff), for IDs the IDs that exist — keeping only a small sample, so memory stays
flat however many traces match.
"""

from __future__ import annotations

import functools
import heapq
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ._client import TraceSummary
from ._exceptions import GuardrailError, InvalidParameterError, NotFoundError, UsageError
from ._messages import FieldMessage
from ._modes import TraceSearcher, mode_of
from ._modes.base import search_all
from ._selection import SkippedExperiment
from ._specs import JobMode, ResolvedSpec

__all__ = [
    "JobPlan",
    "PlanReport",
    "SampleTrace",
    "TraceSearcher",
    "check_expected",
    "count_remaining",
    "job_plan",
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
        count_method: How the count was made: ``metrics`` (one exact request), ``search``
            (every match paged, exact) or ``upper_bound`` (not counted: the number of IDs).
        count_note: Why the count fell back to paging, if it did.
        with_artifacts: The job removes its deleted traces' artifact folders too.
        resolved: The job as planned (experiment ID, pinned cutoff), for ``Engine.run`` to
            run without looking up or counting again; not part of the JSON.
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
    count_method: Literal["metrics", "search", "upper_bound"] = "search"
    count_note: str | None = None
    with_artifacts: bool = False
    resolved: ResolvedSpec | None = Field(default=None, exclude=True, repr=False)

    def planned(self) -> ResolvedSpec:
        """The job as planned, for ``Engine.run``.

        Raises:
            UsageError: the plan does not hold it (read back from JSON, or built by hand).
        """
        if self.resolved is None:
            raise UsageError(
                f"the plan of job {self.label!r} does not hold its resolved spec (was it read "
                "back from JSON?); plan again with Engine.plan"
            )
        return self.resolved


class PlanReport(BaseModel):
    """A dry run of several jobs. Nothing was deleted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    jobs: tuple[JobPlan, ...]
    skipped: tuple[SkippedExperiment, ...] = ()
    """Experiments the specs' selectors found and left out, with the reason."""

    @property
    def would_delete(self) -> int:
        """Total over all jobs."""
        return sum(job.would_delete for job in self.jobs)


CountMethod = Literal["metrics", "search", "upper_bound"]


async def plan_job(
    client: TraceSearcher,
    resolved: ResolvedSpec,
    *,
    sample_size: int = 10,
    page_size: int = 500,
    counts_only: bool = False,
) -> JobPlan:
    """Count exactly what ``resolved`` would delete now, with a sample. Sends no delete.

    The count is one ``traces/metrics`` request where the server can express the job (see
    :meth:`Mode.count_query`); the sample and the oldest/newest timestamps then come from a
    few small searches. Otherwise (IDs, a filter the endpoint does not take, a server
    without it) every match is paged through search, as before.

    Args:
        client: Where to search (a job's caller, or a client).
        resolved: The job.
        sample_size: How many of the oldest to show.
        page_size: Search page size.
        counts_only: Count only (no sample, no oldest/newest), as a run does before it
            starts; an ID job without ``expect_at_most`` is then not counted at all: its
            upper bound, the number of IDs, is reported (``count_method="upper_bound"``).
    """
    spec = resolved.spec
    mode = mode_of(spec)
    matched, note = await _count_in_one_request(client, resolved)
    if matched is not None:
        return await _with_details(client, resolved, matched, sample_size, page_size, counts_only)
    if counts_only and mode.names_ids and spec.expect_at_most is None:
        given = len(spec.trace_ids or ())
        return job_plan(resolved, given, (), None, None, "upper_bound", note)
    return await _paged(client, resolved, sample_size, page_size, note)


async def _count_in_one_request(
    client: TraceSearcher, resolved: ResolvedSpec
) -> tuple[int | None, str | None]:
    """The exact count in one ``traces/metrics`` request, or ``None`` (with why, when the
    server did not answer it) when the job must be paged through search instead.

    Raises:
        NotFoundError: the experiment is gone (not the endpoint).
    """
    query = mode_of(resolved.spec).count_query(resolved)
    if query is None:
        return None, None
    try:
        return await client.query_count(query), None
    except (NotFoundError, InvalidParameterError) as error:
        if isinstance(error, NotFoundError) and error.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise
        return None, (
            "counted by paging through search: the server did not count in one request "
            f"({type(error).__name__}: {error.message})"
        )


async def _with_details(
    client: TraceSearcher,
    resolved: ResolvedSpec,
    matched: int,
    sample_size: int,
    page_size: int,
    counts_only: bool,
) -> JobPlan:
    """The counted plan, with the oldest few and the newest that would go (a few searches)."""
    cap = resolved.spec.max_traces
    would = matched if cap is None else min(matched, cap)
    if counts_only or would == 0:
        return job_plan(resolved, matched, (), None, None, "metrics", None)
    search_filter = resolved.search_filter() or None
    first = await client.search_traces(
        resolved.experiment_id,
        filter_string=search_filter,
        max_results=min(max(sample_size, 1), would, 500),
    )
    head = sorted(first.traces, key=lambda t: (t.timestamp_ms, t.trace_id))
    oldest = head[0].timestamp_ms if head else None
    if cap is None or matched <= cap:
        last = await client.search_traces(
            resolved.experiment_id,
            filter_string=search_filter,
            max_results=1,
            order_by=("timestamp_ms DESC",),
        )
        newest = last.traces[0].timestamp_ms if last.traces else None
    else:
        # A cap: the newest that would go is the cap-th oldest (pages up to the cap only).
        newest = None
        seen = 0
        async for trace in search_all(client, resolved.experiment_id, search_filter, page_size):
            seen += 1
            if seen == cap:
                newest = trace.timestamp_ms
                break
    sample = tuple(_sample(trace) for trace in head[:sample_size])
    return job_plan(resolved, matched, sample, oldest, newest, "metrics", None)


async def _paged(
    client: TraceSearcher,
    resolved: ResolvedSpec,
    sample_size: int,
    page_size: int,
    note: str | None,
) -> JobPlan:
    """Count by reading every match, keeping only the oldest few."""
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
    sample = tuple(
        _sample(trace)
        for trace in sorted((item[2] for item in heap), key=lambda t: (t.timestamp_ms, t.trace_id))
    )
    return job_plan(resolved, matched, sample, oldest, newest, "search", note)


def _sample(trace: TraceSummary) -> SampleTrace:
    return SampleTrace(trace_id=trace.trace_id, timestamp_ms=trace.timestamp_ms, state=trace.state)


def job_plan(
    resolved: ResolvedSpec,
    matched: int,
    sample: tuple[SampleTrace, ...],
    oldest: int | None,
    newest: int | None,
    method: CountMethod,
    note: str | None,
) -> JobPlan:
    """The plan of one job that ``matched`` traces, holding its resolved spec."""
    spec = resolved.spec
    cap = spec.max_traces
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
        sample=sample,
        oldest_ms=oldest,
        newest_ms=newest,
        count_method=method,
        count_note=note,
        with_artifacts=spec.with_artifacts,
        resolved=resolved,
    )


async def count_remaining(
    client: TraceSearcher, resolved: ResolvedSpec, page_size: int = 500
) -> int:
    """How many traces the spec still matches on the server (ignoring its cap): one
    ``traces/metrics`` request where it can say, else paging through search."""
    matched, _ = await _count_in_one_request(client, resolved)
    if matched is not None:
        return matched
    count = 0
    async for _ in mode_of(resolved.spec).matching(client, resolved, page_size):
        count += 1
    return count


def check_expected(plan: JobPlan) -> None:
    """Hold a planned job to its ``expect_at_most``.

    Raises:
        GuardrailError: it would delete more.
    """
    resolved = plan.planned()
    limit = resolved.spec.expect_at_most
    if limit is not None and plan.would_delete > limit:
        raise GuardrailError(
            FieldMessage(
                "{expect_at_most}: job {label!r} would delete {expected} traces, "
                "more than the {limit} expected; nothing was deleted",
                label=resolved.label,
                expected=plan.would_delete,
                limit=limit,
            )
        )
