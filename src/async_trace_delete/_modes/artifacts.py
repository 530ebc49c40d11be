"""Any mode, with each deleted trace's artifact folder removed too (``with_artifacts``).

The folders to remove are those the experiment had when the job started
(:class:`~.artifact_cleanup.ArtifactCleanup`). How the traces are deleted is the mode's
(:meth:`Mode.run_with_folders`), so that a cutoff cleanup stays fast:

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
from collections.abc import AsyncIterator, Awaitable, Sequence

import anyio

from .._client import TraceSummary
from .._counting import CountQuery
from .._specs import ResolvedSpec
from .artifact_cleanup import ArtifactCleanup
from .base import JobContext, Mode, TraceSearcher
from .chunks import ChunkListener

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

    def run_with_folders(
        self, job: JobContext, listener: ChunkListener, holders: Sequence[str]
    ) -> Awaitable[None]:
        """As the inner mode."""
        return self._inner.run_with_folders(job, listener, holders)

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
                    await self._inner.run_with_folders(job, cleanup, sorted(cleanup.existing))
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
