"""Delete by ID: the IDs the user named, in chunks sized by the shared ID sizer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from .._client import TraceSummary
from .._specs import ResolvedSpec
from .base import JobContext, TraceSearcher, search_all
from .chunks import ChunkPipeline

__all__ = ["IDS", "IdsMode"]

_ID_QUERY_CHUNK = 100  # IDs per `request_id IN (...)` search


class IdsMode:
    """Exactly the named IDs (the server ignores unknown ones)."""

    name = "ids"
    sizer = "ids"
    names_ids = True

    async def run(self, job: JobContext) -> None:
        """Queue the IDs chunk by chunk; the workers delete them."""
        ids = job.resolved.spec.trace_ids or ()
        _, sizer = job.sizer

        async def produce(pipeline: ChunkPipeline) -> None:
            position = 0
            while position < len(ids) and not job.caller.quitting:
                size = sizer.size
                await pipeline.queue(ids[position : position + size])
                position += size

        await ChunkPipeline(job).run(produce)

    async def matching(
        self, searcher: TraceSearcher, resolved: ResolvedSpec, page_size: int
    ) -> AsyncIterator[TraceSummary]:
        """The named IDs that exist, searched ``request_id IN (...)`` a hundred at a time."""
        ids: Sequence[str] = resolved.spec.trace_ids or ()
        for start in range(0, len(ids), _ID_QUERY_CHUNK):
            chunk = ids[start : start + _ID_QUERY_CHUNK]
            quoted = ", ".join("'" + trace_id.replace("'", "''") + "'" for trace_id in chunk)
            async for trace in search_all(
                searcher, resolved.experiment_id, f"request_id IN ({quoted})", page_size
            ):
                yield trace


IDS = IdsMode()
