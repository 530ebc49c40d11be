"""Delete by ID: the IDs the user named, in chunks sized by the shared ID sizer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import anyio
from anyio.abc import TaskGroup

from .._client import TraceSummary
from .._counting import CountQuery
from .._specs import ResolvedSpec
from .base import (
    ID_SEARCH_CHUNK,
    JobContext,
    TraceSearcher,
    ids_filter,
    search_all,
    search_named,
)
from .chunks import ChunkListener, ChunkPipeline

__all__ = ["IDS", "IdsMode"]

_ID_QUERIES_AT_ONCE = 4


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

    async def run_with_folders(
        self, job: JobContext, listener: ChunkListener, holders: Sequence[str]
    ) -> None:
        """Each chunk of named IDs searched first (its tags are read before the cascade
        removes them), then deleted whole as :meth:`run` deletes it (not-found counts)."""
        ids = job.resolved.spec.trace_ids or ()

        async def produce(pipeline: ChunkPipeline) -> None:
            for start in range(0, len(ids), ID_SEARCH_CHUNK):
                if job.caller.quitting:
                    return
                chunk = ids[start : start + ID_SEARCH_CHUNK]
                pipeline.expect(await search_named(job, chunk, None))
                await pipeline.queue(chunk)

        await ChunkPipeline(job, listener).run(produce)

    async def matching(
        self, searcher: TraceSearcher, resolved: ResolvedSpec, page_size: int
    ) -> AsyncIterator[TraceSummary]:
        """The named IDs that exist: ``request_id IN (...)`` searches of 500 IDs, a few at
        once (through the engine's gate when ``searcher`` is a job's caller), not one after
        another; yielded in the order the IDs were given, chunk by chunk."""
        ids: Sequence[str] = resolved.spec.trace_ids or ()
        step = ID_SEARCH_CHUNK
        chunks = [ids[start : start + step] for start in range(0, len(ids), step)]
        found: list[list[TraceSummary]] = [[] for _ in chunks]
        failure: list[BaseException] = []
        limiter = anyio.CapacityLimiter(_ID_QUERIES_AT_ONCE)

        async def search(position: int, chunk: Sequence[str], group: TaskGroup) -> None:
            try:
                async with limiter:
                    async for trace in search_all(
                        searcher, resolved.experiment_id, ids_filter(chunk), page_size
                    ):
                        found[position].append(trace)
            except Exception as error:
                failure.append(error)
                group.cancel_scope.cancel()

        async with anyio.create_task_group() as group:
            for position, chunk in enumerate(chunks):
                group.start_soon(search, position, chunk, group)
        if failure:
            raise failure[0]
        for traces in found:
            for trace in traces:
                yield trace

    def count_query(self, resolved: ResolvedSpec) -> CountQuery | None:
        """None: the metrics endpoint cannot filter by trace ID."""
        return None


IDS = IdsMode()
