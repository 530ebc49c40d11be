"""Any mode, with each deleted trace's artifact folder removed too (``with_artifacts``).

The folders to remove are those the experiment had when the job started
(:class:`~.artifact_cleanup.ArtifactCleanup`). How the traces are deleted depends on the
mode, so that a cutoff cleanup stays fast:

* **cutoff, no ``max_traces``** — the traces that have a folder are found by ID
  (``request_id IN (...) AND timestamp_ms <= cutoff``, 500 a search) and deleted by ID,
  then everything else goes by cutoff as without artifacts: the searches cost one per 500
  *folders*, not per 500 traces, and an experiment without folders costs one listing;
* **cutoff with ``max_traces``** — the cap must take the oldest traces, so the job walks its
  selection oldest first and deletes by ID (as a selective job does);
* **selective** — its own walk (it searches anyway), each page telling the folders;
* **IDs** — each chunk of named IDs is searched first (its folders are read before the
  cascade removes the tag), then deleted as without artifacts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence

import anyio

from .._client import TraceSummary
from .._counting import CountQuery
from .._exceptions import OutOfSelectionError
from .._specs import ResolvedSpec
from .artifact_cleanup import CHECK_CHUNK, ArtifactCleanup
from .base import JobContext, Mode, TraceSearcher, ids_filter, search_all
from .chunks import ChunkPipeline
from .matching import produce_matches

__all__ = ["WithArtifacts"]


class WithArtifacts:
    """``inner``, plus the folders of what it deletes.

    Args:
        inner: The mode that deletes the traces.
    """

    sizer = "ids"  # what it deletes by ID feeds the ID sizer; a cutoff part feeds its own

    def __init__(self, inner: Mode) -> None:
        self._inner = inner

    @property
    def name(self) -> str:
        """The inner mode's name: with or without artifacts, the same traces go."""
        return self._inner.name

    @property
    def names_ids(self) -> bool:
        """As the inner mode."""
        return self._inner.names_ids

    def matching(
        self, searcher: TraceSearcher, resolved: ResolvedSpec, page_size: int
    ) -> AsyncIterator[TraceSummary]:
        """As the inner mode."""
        return self._inner.matching(searcher, resolved, page_size)

    def count_query(self, resolved: ResolvedSpec) -> CountQuery | None:
        """As the inner mode."""
        return self._inner.count_query(resolved)

    async def run(self, job: JobContext) -> None:
        """List the folders, delete the traces, remove the folders of those gone."""
        side = job.artifacts
        assert side is not None, "a with_artifacts job gets an ArtifactSide"
        plain = dataclasses.replace(
            job, sizer=(self._inner.sizer, job.shared.sizers[self._inner.sizer])
        )
        cleanup = await ArtifactCleanup.open(job, side)
        if not isinstance(cleanup, ArtifactCleanup):
            try:
                await self._inner.run(plain)  # nothing to remove, or out of reach
            finally:
                if cleanup is not None:
                    side.ledger.skip(job.counts.deleted + job.counts.ambiguous, cleanup)
            return
        failure: Exception | None = None
        try:
            async with anyio.create_task_group() as group:
                cleanup.start(group)
                try:
                    await self._delete(job, plain, cleanup)
                except Exception as error:
                    # Caught inside the group: raising here would cancel the folder workers
                    # (the folders of traces already deleted would be lost) and wrap the
                    # job's error in an ExceptionGroup.
                    failure = error
                finally:
                    await cleanup.finish()
        except anyio.get_cancelled_exc_class():
            cleanup.abandon()
            raise
        if failure is not None:
            raise failure

    async def _delete(self, job: JobContext, plain: JobContext, cleanup: ArtifactCleanup) -> None:
        inner = self._inner.name
        if inner == "ids":
            await ChunkPipeline(job, cleanup).run(lambda p: _produce_named(job, p))
        elif inner == "cutoff" and job.resolved.spec.max_traces is None:
            await ChunkPipeline(job, cleanup).run(
                lambda p: _produce_holders(job, p, sorted(cleanup.existing))
            )
            if not job.caller.quitting:
                await self._inner.run(plain)  # the rest has no folder: by cutoff, fast
        else:
            await ChunkPipeline(job, cleanup).run(lambda p: produce_matches(job, p))


async def _produce_named(job: JobContext, pipeline: ChunkPipeline) -> None:
    """The named IDs, a search of each chunk first (the folders' tags)."""
    ids = job.resolved.spec.trace_ids or ()
    for start in range(0, len(ids), CHECK_CHUNK):
        if job.caller.quitting:
            return
        chunk = ids[start : start + CHECK_CHUNK]
        pipeline.expect(await _search(job, chunk, None))
        await pipeline.queue(chunk)  # all of them, as without artifacts (not-found counts)


async def _produce_holders(job: JobContext, pipeline: ChunkPipeline, ids: Sequence[str]) -> None:
    """The traces with a folder that the cutoff selects, by ID."""
    selection = job.resolved.search_filter()
    cap = job.resolved.cap
    queued = 0
    for start in range(0, len(ids), CHECK_CHUNK):
        if job.caller.quitting:
            return
        found = await _search(job, ids[start : start + CHECK_CHUNK], selection)
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


async def _search(job: JobContext, ids: Sequence[str], selection: str | None) -> list[TraceSummary]:
    """The traces of ``ids`` in the job's experiment (and ``selection``), checked."""
    resolved = job.resolved
    wanted = set(ids)
    query = ids_filter(ids) if not selection else f"{selection} AND {ids_filter(ids)}"
    found = []
    async for trace in search_all(job.caller, resolved.experiment_id, query, CHECK_CHUNK):
        outside = trace.trace_id not in wanted or (
            selection is not None and not resolved.selects(trace.experiment_id, trace.timestamp_ms)
        )
        if outside or trace.experiment_id not in (None, resolved.experiment_id):
            raise OutOfSelectionError(
                f"search answered trace {trace.trace_id!r} (experiment "
                f"{trace.experiment_id}, timestamp_ms {trace.timestamp_ms}), which job "
                f"{job.label!r} did not ask for; the answer is not MLflow's (a proxy or a "
                "cache?), stopping",
                experiment_id=resolved.experiment_id,
            )
        found.append(trace)
    return found
