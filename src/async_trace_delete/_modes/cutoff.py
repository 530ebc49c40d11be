"""Delete by cutoff: ``delete_traces(experiment, max_timestamp_millis, max_traces=batch)``.

One call at a time (parallel cutoff calls on one experiment race for the same oldest rows),
until a call deletes fewer than it asked for or the job's cap is reached. Every call asks
only for what is left of the cap, counting possibly-deleted (ambiguous) traces as deleted,
so the cap can never be passed. Not idempotent: every lost answer may have deleted up to
what it asked for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable

from .._calls import Delete, StopRequested
from .._client import TraceSummary
from .._counting import CountQuery, count_query
from .._exceptions import MlflowApiError
from .._ledger import Doubt
from .._outcomes import RetryDecision
from .._retry import classify
from .._specs import ResolvedSpec
from .base import JobContext, TraceSearcher, search_all

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
