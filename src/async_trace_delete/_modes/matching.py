"""Delete what a search filter matches ("search status = 'ERROR', delete those IDs").

Search pages (oldest first) stream into ID chunks. MLflow's page token is an offset, so
deleting while paging forward would skip rows: the producer walks by timestamp instead
(``timestamp_ms >= last seen``, skipping IDs it already queued at that boundary; the pure
:class:`SearchCursor`), which lets it fetch the next page while the previous one is being
deleted, with memory flat in the number of matches. Every trace a page answers is checked on
the client too (its experiment, ``timestamp_ms <= bound``): a proxy's or a cache's wrong
answer stops the job instead of feeding the deleters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from .._client import TraceSummary
from .._counting import CountQuery, count_query
from .._exceptions import TraceDeleteError
from .._specs import ResolvedSpec
from .base import JobContext, TraceSearcher, check_selected, search_all
from .chunks import ChunkListener, ChunkPipeline

__all__ = ["MATCHING", "MatchingMode", "SearchCursor", "produce_matches"]

_MAX_STALLED_PAGES = 3


class SearchCursor:
    """Where the next search page starts: pure, fed the pages a search answered.

    Args:
        base_filter: The job's own filter (with its bound), or ``""``.
        page_size: The page size asked for (a shorter page is the last).
    """

    def __init__(self, base_filter: str, page_size: int) -> None:
        self._base = base_filter
        self._page_size = page_size
        self._boundary_ts: int | None = None
        self._boundary_ids: set[str] = set()

    def filter(self) -> str | None:
        """The filter of the next search."""
        clauses = [self._base] if self._base else []
        if self._boundary_ts is not None:
            clauses.append(f"timestamp_ms >= {self._boundary_ts}")
        return " AND ".join(clauses) or None

    def fresh(self, page: Sequence[TraceSummary]) -> list[TraceSummary]:
        """The traces of ``page`` not queued already (at the boundary timestamp)."""
        return [trace for trace in page if trace.trace_id not in self._boundary_ids]

    def advance(self, fresh: Sequence[TraceSummary]) -> None:
        """``fresh`` (non-empty) was queued: the boundary moves to its newest timestamp."""
        last_ts = fresh[-1].timestamp_ms
        if last_ts != self._boundary_ts:
            self._boundary_ids = set()
            self._boundary_ts = last_ts
        self._boundary_ids.update(t.trace_id for t in fresh if t.timestamp_ms == last_ts)

    def forget_boundary(self) -> None:
        """What was queued at the boundary is deleted: look again from the same timestamp."""
        self._boundary_ids.clear()

    def is_last(self, page: Sequence[TraceSummary], fresh: Sequence[TraceSummary]) -> bool:
        """A short page whose traces were all new ends the walk."""
        return len(page) < self._page_size and len(fresh) == len(page)

    def is_short(self, page: Sequence[TraceSummary]) -> bool:
        """A page shorter than asked for: no more pages."""
        return len(page) < self._page_size


class MatchingMode:
    """Every trace a filter matches (AND the cutoff, or the submission time)."""

    name = "matching"
    sizer = "ids"
    names_ids = False

    async def run(self, job: JobContext) -> None:
        """Search page by page and queue what each page found."""
        await ChunkPipeline(job).run(lambda pipeline: produce_matches(job, pipeline))

    async def run_with_folders(
        self, job: JobContext, listener: ChunkListener, holders: Sequence[str]
    ) -> None:
        """Its own walk: each page gives the tags of the traces it queues."""
        await ChunkPipeline(job, listener).run(lambda pipeline: produce_matches(job, pipeline))

    def matching(
        self, searcher: TraceSearcher, resolved: ResolvedSpec, page_size: int
    ) -> AsyncIterator[TraceSummary]:
        """The filter AND the job's bound."""
        return search_all(
            searcher, resolved.experiment_id, resolved.search_filter() or None, page_size
        )

    def count_query(self, resolved: ResolvedSpec) -> CountQuery | None:
        """The filter's status, tag and metadata equalities and the bound, when that is all
        it says (see :mod:`.._counting`)."""
        return count_query(
            resolved.experiment_id, resolved.spec.filter_string, resolved.upper_bound
        )


async def produce_matches(job: JobContext, pipeline: ChunkPipeline) -> None:
    """Walk the job's selection (``search_filter``) oldest first into ``pipeline``, up to
    its cap."""
    resolved = job.resolved
    cursor = SearchCursor(resolved.search_filter(), job.shared.config.search_page_size)
    queued = 0
    stalled = 0
    cap = resolved.cap
    while not job.caller.quitting:
        page = await job.caller.search_traces(
            resolved.experiment_id,
            filter_string=cursor.filter(),
            max_results=job.shared.config.search_page_size,
        )
        for trace in page.traces:
            check_selected(job, trace)
        fresh = cursor.fresh(page.traces)
        if cap is not None and queued + len(fresh) > cap:
            fresh = fresh[: cap - queued]
            await pipeline.queue_traces(fresh)
            guard = job.guard
            if guard is not None:
                await pipeline.drained()  # let what was queued be deleted and counted
                raise job.guardrail_error(guard)
            return
        if not fresh:
            if cursor.is_short(page.traces):
                return  # nothing new and no more pages: every match has been queued
            # A whole page of already-queued IDs at one timestamp: let them be deleted,
            # then look again from the same boundary.
            stalled += 1
            if stalled > _MAX_STALLED_PAGES:
                raise TraceDeleteError(
                    f"search keeps returning traces that deleting did not remove "
                    f"(experiment {resolved.experiment_id}); stopping"
                )
            await pipeline.drained()
            cursor.forget_boundary()
            continue
        stalled = 0
        cursor.advance(fresh)
        await pipeline.queue_traces(fresh)
        queued += len(fresh)
        if cursor.is_last(page.traces, fresh):
            return


MATCHING = MatchingMode()
