"""Delete by cutoff: ``delete_traces(experiment, max_timestamp_millis, max_traces=batch)``.

One call at a time (parallel cutoff calls on one experiment race for the same oldest rows),
until a call deletes fewer than it asked for or the job's cap is reached. Every call asks
only for what is left of the cap, counting possibly-deleted (ambiguous) traces as deleted,
so the cap can never be passed. Not idempotent: every lost answer may have deleted up to
what it asked for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Sequence

from .._calls import Delete, StopRequested
from .._client import TraceSummary
from .._counting import CountQuery, count_query
from .._exceptions import MlflowApiError
from .._ledger import Doubt
from .._outcomes import RetryDecision
from .._retry import classify
from .._specs import ResolvedSpec
from .base import ID_SEARCH_CHUNK, JobContext, TraceSearcher, search_all, search_named
from .chunks import ChunkListener, ChunkPipeline
from .matching import MATCHING

__all__ = ["CUTOFF", "CutoffMode"]


class CutoffMode:
    """Everything at or before a cutoff, oldest first, in calls sized by latency."""

    name = "cutoff"
    sizer = "cutoff"
    names_ids = False

    async def run(self, job: JobContext) -> None:
        """Delete in sized calls until drained or capped."""
        shared = job.shared
        _, sizer = job.sizer
        cutoff = job.resolved.cutoff_millis
        assert cutoff is not None
        experiment_id = job.resolved.experiment_id

        def build() -> Delete | None:
            size = sizer.size
            left = job.cap_left
            if left is not None:
                size = min(size, left)
            if size <= 0:
                return None

            def request() -> Awaitable[int]:
                return shared.client.delete_traces(
                    experiment_id,
                    max_timestamp_millis=cutoff,
                    max_traces=size,
                    request_timeout=shared.config.request_timeout,
                )

            return Delete(request, size, job.sizer, Doubt(job.counts, size, idempotent=False))

        while not job.caller.stopped:
            try:
                answer = await job.caller.delete(build)
            except StopRequested:
                return
            except MlflowApiError as error:
                requested = error.batch_size or 0
                smaller = sizer.min_size < requested and sizer.size < requested
                if classify(error) is RetryDecision.SHRINK and smaller:
                    continue  # the sizer learnt the ceiling: a smaller call is a new call
                raise
            if answer is None:
                await _check_guardrail_cap(job)
                return
            deleted, requested = answer
            if deleted < requested:
                return  # drained: nothing older than the cutoff is left

    async def run_with_folders(
        self, job: JobContext, listener: ChunkListener, holders: Sequence[str]
    ) -> None:
        """Without ``max_traces``: the traces that have a folder are found by ID (one search
        per 500 *folders*) and deleted by ID, then the rest by cutoff as :meth:`run` does.
        With it, the cap must take the oldest traces: the selective walk, oldest first."""
        if job.resolved.spec.max_traces is not None:
            await MATCHING.run_with_folders(job, listener, holders)
            return
        await ChunkPipeline(job, listener).run(lambda p: _produce_holders(job, p, holders))
        if not job.caller.quitting:  # the rest has no folder: by cutoff, on its own sizer
            await self.run(
                dataclasses.replace(job, sizer=(self.sizer, job.shared.sizers[self.sizer]))
            )

    def matching(
        self, searcher: TraceSearcher, resolved: ResolvedSpec, page_size: int
    ) -> AsyncIterator[TraceSummary]:
        """``timestamp_ms <= cutoff`` (AND the filter, if any)."""
        return search_all(
            searcher, resolved.experiment_id, resolved.search_filter() or None, page_size
        )

    def count_query(self, resolved: ResolvedSpec) -> CountQuery | None:
        """``timestamp_ms <= cutoff``: always expressible."""
        return count_query(resolved.experiment_id, None, resolved.upper_bound)


async def _produce_holders(job: JobContext, pipeline: ChunkPipeline, ids: Sequence[str]) -> None:
    """The traces with a folder that the cutoff selects, by ID, up to the job's cap."""
    selection = job.resolved.search_filter()
    cap = job.resolved.cap
    queued = 0
    for start in range(0, len(ids), ID_SEARCH_CHUNK):
        if job.caller.quitting:
            return
        found = await search_named(job, ids[start : start + ID_SEARCH_CHUNK], selection)
        if cap is not None and queued + len(found) > cap:
            await pipeline.queue_traces(found[: cap - queued])
            guard = job.guard
            if guard is not None:
                await pipeline.drained()
                raise job.guardrail_error(guard)
            return
        if found:
            await pipeline.queue_traces(found)
            queued += len(found)


async def _check_guardrail_cap(job: JobContext) -> None:
    """The cap is reached; if ``expect_at_most`` set it and traces still match, fail."""
    guard = job.guard
    if guard is None:
        return
    try:
        page = await job.caller.search_traces(
            job.resolved.experiment_id,
            filter_string=job.resolved.search_filter() or None,
            max_results=1,
        )
    except StopRequested:
        return
    if page.traces:
        raise job.guardrail_error(guard)


CUTOFF = CutoffMode()
