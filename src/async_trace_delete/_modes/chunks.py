"""Chunks of trace IDs deleted by several workers: the machinery of the ID and matching modes.

A producer (the mode) queues chunks of IDs; up to ``max_concurrency`` workers delete them.
Deleting by ID is idempotent, so a retry after a lost answer is exact and a chunk is in doubt
once however many of its answers were lost. A chunk the server finds too large is split in
two. When one part fails, the job is *halted*: nothing new is sent, the calls in flight
finish and are counted, then the first failure is raised.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from .._calls import Delete, StopRequested
from .._client import TraceSummary
from .._exceptions import MlflowApiError
from .._ledger import Doubt
from .._outcomes import RetryDecision
from .._retry import classify
from .base import JobContext

__all__ = ["ChunkListener", "ChunkPipeline"]

_CHUNK_QUEUE = 2  # chunks buffered between the producer and the deleters


class ChunkListener(Protocol):
    """Told what each chunk's deletes came to (the artifact cleanup listens)."""

    def expect(self, traces: Sequence[TraceSummary]) -> None:
        """``traces`` (as a search answered them) are about to be queued."""

    async def deleted(self, ids: Sequence[str], deleted: int) -> None:
        """A delete of ``ids`` answered: ``deleted`` of them were there and are gone, and
        none of them is left in the experiment."""

    def unsettled(self, ids: Sequence[str]) -> None:
        """The delete of ``ids`` ended after an answer was lost, without one that settles
        it (then failed, stopped, cancelled): they may or may not be gone. A delete that
        ended without any lost answer deleted nothing and is not reported."""


class ChunkPipeline:
    """Runs one job's producer against its chunk workers.

    Args:
        job: The job.
        listener: Told how each chunk ended (``None``: nobody listens).
    """

    def __init__(self, job: JobContext, listener: ChunkListener | None = None) -> None:
        self._job = job
        self._listener = listener
        self._send: ObjectSendStream[list[str]] | None = None
        self._pending = 0  # chunks queued or being deleted
        self._idle = anyio.Event()
        self._idle.set()

    async def run(self, produce: Callable[[ChunkPipeline], Awaitable[None]]) -> None:
        """Run ``produce(self)`` (which calls :meth:`queue`) and the workers to their end."""
        job = self._job
        send, receive = anyio.create_memory_object_stream[list[str]](_CHUNK_QUEUE)
        self._send = send
        async with anyio.create_task_group() as group:

            async def producer() -> None:
                async with send:
                    try:
                        await produce(self)
                    except StopRequested:
                        pass
                    except Exception as error:
                        job.caller.halt(error)

            group.start_soon(producer)
            for _ in range(job.shared.config.max_concurrency):
                group.start_soon(self._worker, receive.clone())
            receive.close()
        failure = job.caller.failure
        if failure is not None:
            raise failure

    async def queue(self, ids: Sequence[str]) -> None:
        """Queue ``ids`` in chunks of the size the shared sizer holds now."""
        assert self._send is not None
        _, sizer = self._job.sizer
        size = sizer.size
        for start in range(0, len(ids), size):
            self._pending += 1
            if self._pending == 1:
                self._idle = anyio.Event()
            await self._send.send(list(ids[start : start + size]))

    def expect(self, traces: Sequence[TraceSummary]) -> None:
        """Tell the listener that ``traces`` (a search's answer) are about to be queued."""
        if self._listener is not None:
            self._listener.expect(traces)

    async def queue_traces(self, traces: Sequence[TraceSummary]) -> None:
        """Queue the IDs of ``traces`` (a search's answer), telling the listener first."""
        self.expect(traces)
        await self.queue([trace.trace_id for trace in traces])

    async def drained(self) -> None:
        """Wait until every queued chunk was deleted (or given up) and counted."""
        await self._idle.wait()

    async def _worker(self, receive: ObjectReceiveStream[list[str]]) -> None:
        job = self._job
        async with receive:
            async for chunk in receive:
                try:
                    if not job.caller.quitting:  # drain without deleting
                        await self._delete(chunk, Doubt(job.counts, len(chunk), idempotent=True))
                except StopRequested:
                    pass
                except Exception as error:
                    # Halt the job; the other workers' calls in flight finish and are counted.
                    job.caller.halt(error)
                finally:
                    self._pending -= 1
                    if self._pending == 0:
                        self._idle.set()

    async def _delete(self, chunk: list[str], doubt: Doubt) -> None:
        """Delete one chunk, retrying; split it if the server says it is too large.

        ``doubt`` settles what lost answers may have deleted; a split hands it on to the
        halves, which settle their own parts.
        """
        job = self._job
        shared = job.shared
        experiment_id = job.resolved.experiment_id

        def request() -> Awaitable[int]:
            return shared.client.delete_traces(
                experiment_id, trace_ids=chunk, request_timeout=shared.config.request_timeout
            )

        operation = Delete(request, len(chunk), job.sizer, doubt, trace_ids=chunk)
        listener = self._listener
        try:
            answer = await job.caller.delete(lambda: operation)  # the same IDs every attempt
        except MlflowApiError as error:
            if classify(error) is not RetryDecision.SHRINK or len(chunk) == 1:
                if listener is not None and doubt.in_doubt:
                    listener.unsettled(chunk)
                raise
            half = (len(chunk) + 1) // 2
            first, second = doubt.split(half)
            await self._delete(chunk[:half], first)
            await self._delete(chunk[half:], second)
        except BaseException:  # a stop before a retry, a cancel, a progress timeout
            if listener is not None and doubt.in_doubt:
                listener.unsettled(chunk)  # else nothing sent, or every answer said "not done"
            raise
        else:
            if listener is not None and answer is not None:
                await listener.deleted(chunk, answer[0])
