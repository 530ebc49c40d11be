"""Job runners: the loops that turn one resolved spec into delete calls.

Every call goes through the job's :class:`~._calls.Caller` (gate, retries, accounting).

* cutoff — ``delete_traces(experiment, max_timestamp_millis, max_traces=batch)`` one call at a
  time (parallel cutoff calls on one experiment race for the same oldest rows), until a call
  deletes fewer than it asked for or the job's cap is reached. Every call asks only for what
  is left of the cap, counting possibly-deleted (ambiguous) traces as deleted, so the cap can
  never be passed;
* IDs — chunks of IDs (sized by the shared ID sizer) deleted by up to ``max_concurrency``
  workers; deleting by ID is idempotent, so a retry after a lost answer is exact;
* matching — search pages (oldest first) stream into ID chunks. MLflow's page token is an
  offset, so deleting while paging forward would skip rows: the producer walks by timestamp
  instead (``timestamp_ms >= last seen``, skipping IDs it already queued at that boundary),
  which lets it fetch the next page while the previous one is being deleted, with memory
  flat in the number of matches. Every trace a page answers is checked on the client too
  (its experiment, ``timestamp_ms <= bound``): a proxy's or a cache's wrong answer stops the
  job instead of feeding the deleters.

The cap of a job is the smaller of ``max_traces`` and ``expect_at_most``: a guardrail is a
hard cap while deleting, not only a count before. When ``expect_at_most`` is what stopped a
job and traces still match, the job fails with :class:`GuardrailError`.

When one part of an ID or matching job fails, the job is *halted*: nothing new is sent, the
calls in flight finish and are counted, then the first failure is raised.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from ._calls import Caller, Counters, Delete, Doubt, SharedState, StopRequested
from ._events import JobStarted
from ._exceptions import GuardrailError, MlflowApiError, OutOfSelectionError, TraceDeleteError
from ._reports import JobReport, JobState
from ._retry import RetryDecision, classify
from ._specs import ResolvedSpec

__all__ = ["JobRunner", "SharedState"]

_CHUNK_QUEUE = 2  # chunks buffered between the search producer and the deleters
_MAX_STALLED_PAGES = 3


class JobRunner:
    """Runs one resolved spec and keeps its live counters."""

    def __init__(self, resolved: ResolvedSpec, shared: SharedState) -> None:
        self.resolved = resolved
        self.shared = shared
        self.state = JobState.PENDING
        self.counts = Counters(record_limit=shared.config.batch_record_limit)
        self.caller = Caller(
            shared,
            key=self,
            label=resolved.label,
            experiment_id=resolved.experiment_id,
            counts=self.counts,
        )
        self.error: BaseException | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.matched_before: int | None = None
        self.verified_remaining: int | None = None
        self.verification_error: str | None = None
        self._chunks_pending = 0  # chunks queued or being deleted (ID and matching jobs)
        self._idle = anyio.Event()
        self._idle.set()

    @property
    def label(self) -> str:
        """The job's name in reports."""
        return self.resolved.label

    @property
    def stopping(self) -> bool:
        """True once a stop was asked for."""
        return self.caller.stopped

    def stop(self) -> None:
        """Send nothing new, wake every wait; calls in flight finish and are counted."""
        self.caller.stop()

    @property
    def current_batch_size(self) -> int:
        """The size the next call of this job would ask for."""
        if self.resolved.spec.mode == "cutoff":
            return self.shared.cutoff_sizer.size
        return self.shared.id_sizer.size

    @property
    def elapsed(self) -> float:
        """Seconds the job has run (so far, or in all)."""
        if self.started_at is None:
            return 0.0
        end = self.finished_at if self.finished_at is not None else self.shared.clock()
        return end - self.started_at

    def report(self) -> JobReport:
        """A frozen snapshot of the job (records and error texts: the newest are kept)."""
        spec = self.resolved.spec
        counts = self.counts
        return JobReport(
            label=self.label,
            experiment_id=self.resolved.experiment_id,
            mode=spec.mode,
            cutoff_millis=self.resolved.cutoff_millis,
            max_traces=spec.max_traces,
            state=self.state,
            deleted=counts.deleted,
            ambiguous=counts.ambiguous,
            ambiguous_calls=counts.ambiguous_calls,
            not_found=counts.not_found,
            requested_ids=len(spec.trace_ids) if spec.trace_ids is not None else None,
            calls=counts.calls,
            retries=counts.retries,
            errors=tuple(counts.errors),
            errors_dropped=counts.errors_total - len(counts.errors),
            error=str(self.error) if self.error is not None else None,
            error_type=type(self.error).__name__ if self.error is not None else None,
            batches=tuple(counts.batches),
            batches_dropped=counts.batches_total - len(counts.batches),
            elapsed=self.elapsed,
            matched_before=self.matched_before,
            verified_remaining=self.verified_remaining,
            verification_error=self.verification_error,
        )

    async def run(self) -> None:
        """Run the job to its end; raises what made it fail (the engine records it)."""
        shared = self.shared
        self.state = JobState.RUNNING
        self.started_at = shared.clock()
        self.caller.last_progress = self.started_at
        shared.emit(
            JobStarted(
                job=self.label,
                experiment_id=self.resolved.experiment_id,
                mode=self.resolved.spec.mode,
                cutoff_millis=self.resolved.cutoff_millis,
                at=self.started_at - shared.opened_at,
            )
        )
        mode = self.resolved.spec.mode
        if mode == "cutoff":
            await self._run_cutoff()
        elif mode == "ids":
            ids = self.resolved.spec.trace_ids or ()
            await self._delete_id_stream(lambda send: self._produce_id_chunks(ids, send))
        else:
            await self._delete_id_stream(self._produce_matching_chunks)

    # -- cutoff ---------------------------------------------------------------------------

    def _cap_left(self) -> int | None:
        cap = self.resolved.cap
        if cap is None:
            return None
        return cap - self.counts.deleted - self.counts.ambiguous

    async def _run_cutoff(self) -> None:
        shared = self.shared
        sizer = shared.cutoff_sizer
        cutoff = self.resolved.cutoff_millis
        assert cutoff is not None
        experiment_id = self.resolved.experiment_id

        def build() -> Delete | None:
            size = sizer.size
            left = self._cap_left()
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

            # Not idempotent: every lost answer may have deleted up to `size` more.
            return Delete(request, size, sizer, Doubt(self.counts, size, idempotent=False))

        while not self.stopping:
            try:
                answer = await self.caller.delete(build)
            except StopRequested:
                return
            except MlflowApiError as error:
                requested = error.batch_size or 0
                smaller = sizer.min_size < requested and sizer.size < requested
                if classify(error) is RetryDecision.SHRINK and smaller:
                    continue  # the sizer learnt the ceiling: a smaller call is a new call
                raise
            if answer is None:
                await self._check_guardrail_cap()
                return
            deleted, requested = answer
            if deleted < requested:
                return  # drained: nothing older than the cutoff is left

    @property
    def _guard(self) -> int | None:
        """``expect_at_most`` when it is the job's binding cap (below ``max_traces``)."""
        spec = self.resolved.spec
        guard = spec.expect_at_most
        if guard is None or (spec.max_traces is not None and spec.max_traces <= guard):
            return None  # max_traces is the cap: reaching it is the job's end, not a refusal
        return guard

    async def _check_guardrail_cap(self) -> None:
        """The cap is reached; if ``expect_at_most`` set it and traces still match, fail."""
        guard = self._guard
        if guard is None:
            return
        try:
            page = await self.caller.search_traces(
                self.resolved.experiment_id,
                filter_string=self.resolved.search_filter() or None,
                max_results=1,
            )
        except StopRequested:
            return
        if page.traces:
            self._raise_guardrail(guard)

    def _raise_guardrail(self, guard: int) -> None:
        counts = self.counts
        raise GuardrailError(
            f"expect_at_most: job {self.label!r} reached its limit of {guard} traces "
            f"({counts.deleted} deleted, {counts.ambiguous} possibly deleted) and more still "
            "match (written during the run?); it stopped there"
        )

    # -- IDs and matching -------------------------------------------------------------------

    async def _delete_id_stream(
        self, produce: Callable[[ObjectSendStream[list[str]]], Awaitable[None]]
    ) -> None:
        send, receive = anyio.create_memory_object_stream[list[str]](_CHUNK_QUEUE)
        async with anyio.create_task_group() as group:

            async def producer() -> None:
                async with send:
                    try:
                        await produce(send)
                    except StopRequested:
                        pass
                    except Exception as error:
                        self.caller.halt(error)

            group.start_soon(producer)
            for _ in range(self.shared.config.max_concurrency):
                group.start_soon(self._chunk_worker, receive.clone())
            receive.close()
        failure = self.caller.failure
        if failure is not None:
            raise failure

    async def _chunk_worker(self, receive: ObjectReceiveStream[list[str]]) -> None:
        async with receive:
            async for chunk in receive:
                try:
                    if not (self.caller.quitting):  # drain without deleting
                        await self._delete_chunk(
                            chunk, Doubt(self.counts, len(chunk), idempotent=True)
                        )
                except StopRequested:
                    pass
                except Exception as error:
                    # Halt the job; the other workers' calls in flight finish and are counted.
                    self.caller.halt(error)
                finally:
                    self._chunks_pending -= 1
                    if self._chunks_pending == 0:
                        self._idle.set()

    async def _send_chunk(self, send: ObjectSendStream[list[str]], chunk: list[str]) -> None:
        """Queue a chunk, counting it as pending until a worker is done with it."""
        self._chunks_pending += 1
        if self._chunks_pending == 1:
            self._idle = anyio.Event()
        await send.send(chunk)

    async def _produce_id_chunks(
        self, trace_ids: Sequence[str], send: ObjectSendStream[list[str]]
    ) -> None:
        position = 0
        while position < len(trace_ids) and not (self.caller.quitting):
            size = min(self.shared.id_sizer.size, self.shared.config.max_id_chunk)
            await self._send_chunk(send, list(trace_ids[position : position + size]))
            position += size

    async def _produce_matching_chunks(self, send: ObjectSendStream[list[str]]) -> None:
        shared = self.shared
        resolved = self.resolved
        base_filter = resolved.search_filter()
        page_size = shared.config.search_page_size
        boundary_ts: int | None = None
        boundary_ids: set[str] = set()
        queued = 0
        stalled = 0
        cap = resolved.cap
        while not (self.caller.quitting):
            clauses = [base_filter] if base_filter else []
            if boundary_ts is not None:
                clauses.append(f"timestamp_ms >= {boundary_ts}")
            page = await self.caller.search_traces(
                resolved.experiment_id,
                filter_string=" AND ".join(clauses) or None,
                max_results=page_size,
            )
            for trace in page.traces:
                if not resolved.selects(trace.experiment_id, trace.timestamp_ms):
                    raise OutOfSelectionError(
                        f"search answered trace {trace.trace_id!r} (experiment "
                        f"{trace.experiment_id}, timestamp_ms {trace.timestamp_ms}), which "
                        f"job {self.label!r} must not delete (experiment "
                        f"{resolved.experiment_id}, timestamp_ms <= {resolved.upper_bound}); "
                        "the answer is not MLflow's (a proxy or a cache?), stopping",
                        experiment_id=resolved.experiment_id,
                    )
            fresh = [trace for trace in page.traces if trace.trace_id not in boundary_ids]
            if cap is not None and queued + len(fresh) > cap:
                fresh = fresh[: cap - queued]
                await self._queue(send, [trace.trace_id for trace in fresh])
                queued += len(fresh)
                guard = self._guard
                if guard is not None:
                    await self._idle.wait()  # let what was queued be deleted and counted
                    self._raise_guardrail(guard)
                return
            if not fresh:
                if len(page.traces) < page_size:
                    return  # nothing new and no more pages: every match has been queued
                # A whole page of already-queued IDs at one timestamp: let them be deleted,
                # then look again from the same boundary.
                stalled += 1
                if stalled > _MAX_STALLED_PAGES:
                    raise TraceDeleteError(
                        f"search keeps returning traces that deleting did not remove "
                        f"(experiment {resolved.experiment_id}); stopping"
                    )
                await self._idle.wait()
                boundary_ids.clear()
                continue
            stalled = 0
            last_ts = fresh[-1].timestamp_ms
            if last_ts != boundary_ts:
                boundary_ids = set()
                boundary_ts = last_ts
            boundary_ids.update(t.trace_id for t in fresh if t.timestamp_ms == last_ts)
            await self._queue(send, [trace.trace_id for trace in fresh])
            queued += len(fresh)
            if len(page.traces) < page_size and len(fresh) == len(page.traces):
                return

    async def _queue(self, send: ObjectSendStream[list[str]], ids: list[str]) -> None:
        size = min(self.shared.id_sizer.size, self.shared.config.max_id_chunk)
        for start in range(0, len(ids), size):
            await self._send_chunk(send, ids[start : start + size])

    async def _delete_chunk(self, chunk: list[str], doubt: Doubt) -> None:
        """Delete one chunk of IDs, retrying; split it if the server says it is too large.

        ``doubt`` settles what lost answers may have deleted: a chunk is ambiguous once,
        however many of its attempts went unanswered, and a split hands that on to the
        halves, which settle their own parts.
        """
        shared = self.shared
        experiment_id = self.resolved.experiment_id

        def request() -> Awaitable[int]:
            return shared.client.delete_traces(
                experiment_id, trace_ids=chunk, request_timeout=shared.config.request_timeout
            )

        operation = Delete(request, len(chunk), shared.id_sizer, doubt, trace_ids=chunk)
        try:
            await self.caller.delete(lambda: operation)  # the same IDs every attempt
        except MlflowApiError as error:
            if classify(error) is not RetryDecision.SHRINK or len(chunk) == 1:
                raise
            half = (len(chunk) + 1) // 2
            first, second = doubt.split(half)
            await self._delete_chunk(chunk[:half], first)
            await self._delete_chunk(chunk[half:], second)
