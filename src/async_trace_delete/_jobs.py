"""Job runners: the loops that turn one resolved spec into delete calls.

* cutoff — ``delete_traces(experiment, max_timestamp_millis, max_traces=batch)`` one call at a
  time (parallel cutoff calls on one experiment race for the same oldest rows), until a call
  deletes fewer than it asked for or the job's cap is reached. The last call asks only for
  what is left of the cap, counting possibly-deleted (ambiguous) traces as deleted, so the
  cap can never be passed;
* IDs — chunks of IDs (sized by the shared ID sizer) deleted by up to ``max_concurrency``
  workers; deleting by ID is idempotent, so a retry after a lost answer is exact;
* matching — search pages (oldest first) stream into ID chunks. MLflow's page token is an
  offset, so deleting while paging forward would skip rows: the producer walks by timestamp
  instead (``timestamp_ms >= last seen``, skipping IDs it already queued at that boundary),
  which lets it fetch the next page while the previous one is being deleted, with memory
  flat in the number of matches.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from ._batching import BatchSizer, Outcome
from ._client import TracesClient
from ._config import EngineConfig
from ._events import BatchDeleted, BatchSizeChanged, Event, JobStarted, RetryScheduled
from ._exceptions import MlflowApiError, RetryBudgetExhaustedError, TraceDeleteError
from ._reports import BatchRecord, JobReport, JobState
from ._retry import RetryBudget, RetryDecision, classify, compute_backoff, outcome_for, should_retry
from ._scheduler import Scheduler
from ._specs import ResolvedSpec

__all__ = ["JobRunner", "SharedState"]

_CHUNK_QUEUE = 2  # chunks buffered between the search producer and the deleters
_MAX_STALLED_PAGES = 3


@dataclass
class SharedState:
    """What all jobs of one engine share: the server's client, gate and learnt sizes."""

    config: EngineConfig
    client: TracesClient
    scheduler: Scheduler
    cutoff_sizer: BatchSizer
    id_sizer: BatchSizer
    budget: RetryBudget
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    random: Callable[[], float]
    emit: Callable[[Event], None]
    opened_at: float


@dataclass
class _Counters:
    deleted: int = 0
    ambiguous: int = 0
    ambiguous_calls: int = 0
    not_found: int = 0
    calls: int = 0
    retries: int = 0
    errors: list[str] = field(default_factory=list)
    batches: list[BatchRecord] = field(default_factory=list)


class JobRunner:
    """Runs one resolved spec and keeps its live counters."""

    def __init__(self, resolved: ResolvedSpec, shared: SharedState) -> None:
        self.resolved = resolved
        self.shared = shared
        self.state = JobState.PENDING
        self.counts = _Counters()
        self.error: BaseException | None = None
        self.stopping = False
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.matched_before: int | None = None
        self.verified_remaining: int | None = None
        self._chunks_pending = 0  # chunks queued or being deleted (ID and matching jobs)
        self._idle = anyio.Event()
        self._idle.set()

    @property
    def label(self) -> str:
        """The job's name in reports."""
        return self.resolved.label

    @property
    def current_batch_size(self) -> int:
        """The size the next call of this job would ask for."""
        if self.resolved.spec.mode == "cutoff":
            return self.shared.cutoff_sizer.size
        return self.shared.id_sizer.size

    def report(self) -> JobReport:
        """A frozen snapshot of the job."""
        spec = self.resolved.spec
        counts = self.counts
        if self.started_at is None:
            elapsed = 0.0
        else:
            end = self.finished_at if self.finished_at is not None else self.shared.clock()
            elapsed = end - self.started_at
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
            error=str(self.error) if self.error is not None else None,
            error_type=type(self.error).__name__ if self.error is not None else None,
            batches=tuple(counts.batches),
            elapsed=elapsed,
            matched_before=self.matched_before,
            verified_remaining=self.verified_remaining,
        )

    async def run(self) -> None:
        """Run the job to its end; raises what made it fail (the engine records it)."""
        shared = self.shared
        self.state = JobState.RUNNING
        self.started_at = shared.clock()
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
        cap = self.resolved.spec.max_traces
        if cap is None:
            return None
        return cap - self.counts.deleted - self.counts.ambiguous

    async def _run_cutoff(self) -> None:
        shared = self.shared
        sizer = shared.cutoff_sizer
        cutoff = self.resolved.cutoff_millis
        assert cutoff is not None
        experiment_id = self.resolved.experiment_id
        attempt = 0
        first_try_at = 0.0
        while not self.stopping:
            size = sizer.size
            left = self._cap_left()
            if left is not None:
                size = min(size, left)
            if size <= 0:
                return
            if attempt == 0:
                first_try_at = shared.clock()
            attempt += 1

            def request(size: int = size) -> Awaitable[int]:
                return shared.client.delete_traces(
                    experiment_id,
                    max_timestamp_millis=cutoff,
                    max_traces=size,
                    request_timeout=shared.config.request_timeout,
                )

            try:
                deleted = await self._call(size, attempt, sizer, request)
            except _StopRequested:
                return
            except MlflowApiError as error:
                decision = classify(error)
                if decision is RetryDecision.SHRINK and size > sizer.min_size:
                    attempt = 0  # a smaller call is a new call, not a retry
                    continue
                if decision is not RetryDecision.RETRY:
                    raise
                await self._back_off(error, attempt, first_try_at)
                continue
            attempt = 0
            if deleted < size:
                return  # drained: nothing older than the cutoff is left

    # -- IDs and matching -------------------------------------------------------------------

    async def _delete_id_stream(
        self, produce: Callable[[ObjectSendStream[list[str]]], Awaitable[None]]
    ) -> None:
        send, receive = anyio.create_memory_object_stream[list[str]](_CHUNK_QUEUE)
        try:
            async with anyio.create_task_group() as group:

                async def producer() -> None:
                    async with send:
                        await produce(send)

                group.start_soon(producer)
                for _ in range(self.shared.config.max_concurrency):
                    group.start_soon(self._chunk_worker, receive.clone())
                receive.close()
        except ExceptionGroup as group_error:
            # Report the typed error that failed the job, not the task group's wrapper.
            first, *others = _leaves(group_error)
            self.counts.errors.extend(f"{type(error).__name__}: {error}" for error in others)
            raise first from None

    async def _chunk_worker(self, receive: ObjectReceiveStream[list[str]]) -> None:
        async with receive:
            async for chunk in receive:
                try:
                    if not self.stopping:  # once stopping, drain without deleting
                        await self._delete_chunk(chunk)
                except _StopRequested:
                    pass
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
        while position < len(trace_ids) and not self.stopping:
            size = min(self.shared.id_sizer.size, self.shared.config.max_id_chunk)
            await self._send_chunk(send, list(trace_ids[position : position + size]))
            position += size

    async def _produce_matching_chunks(self, send: ObjectSendStream[list[str]]) -> None:
        shared = self.shared
        base_filter = self.resolved.search_filter()
        page_size = shared.config.search_page_size
        boundary_ts: int | None = None
        boundary_ids: set[str] = set()
        queued = 0
        stalled = 0
        cap = self.resolved.spec.max_traces
        while not self.stopping:
            if cap is not None and queued >= cap:
                return
            clauses = [base_filter] if base_filter else []
            if boundary_ts is not None:
                clauses.append(f"timestamp_ms >= {boundary_ts}")
            page = await self._search_with_retry(" AND ".join(clauses), page_size)
            fresh = [trace for trace in page if trace.trace_id not in boundary_ids]
            if cap is not None:
                fresh = fresh[: cap - queued]
            if not fresh:
                if len(page) < page_size:
                    return  # nothing new and no more pages: every match has been queued
                # A whole page of already-queued IDs at one timestamp: let them be deleted,
                # then look again from the same boundary.
                stalled += 1
                if stalled > _MAX_STALLED_PAGES:
                    raise TraceDeleteError(
                        f"search keeps returning traces that deleting did not remove "
                        f"(experiment {self.resolved.experiment_id}); stopping"
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
            ids = [trace.trace_id for trace in fresh]
            queued += len(ids)
            size = min(shared.id_sizer.size, shared.config.max_id_chunk)
            for start in range(0, len(ids), size):
                await self._send_chunk(send, ids[start : start + size])
            if len(page) < page_size and len(fresh) == len(page):
                return

    async def _search_with_retry(self, filter_string: str, page_size: int) -> list[_Found]:
        shared = self.shared
        attempt = 0
        first_try_at = shared.clock()
        while True:
            attempt += 1
            try:
                page = await shared.client.search_traces(
                    self.resolved.experiment_id,
                    filter_string=filter_string or None,
                    max_results=page_size,
                )
            except MlflowApiError as error:
                if classify(error) is not RetryDecision.RETRY:
                    raise
                await self._back_off(error, attempt, first_try_at, requested=0)
                continue
            return [_Found(t.trace_id, t.timestamp_ms) for t in page.traces]

    async def _delete_chunk(self, chunk: list[str], *, in_doubt: bool = False) -> None:
        """Delete one chunk of IDs, retrying; split it if the server says it is too large.

        ``in_doubt``: an earlier, unanswered call over these IDs may have deleted them; the
        chunk starts counted as ambiguous and its answer settles how many really were.
        """
        shared = self.shared
        sizer = shared.id_sizer
        experiment_id = self.resolved.experiment_id
        attempt = 0
        first_try_at = shared.clock()
        ambiguous_added = 0
        if in_doubt:
            ambiguous_added = len(chunk)
            self.counts.ambiguous += ambiguous_added
        while True:
            attempt += 1

            def request() -> Awaitable[int]:
                return shared.client.delete_traces(
                    experiment_id, trace_ids=chunk, request_timeout=shared.config.request_timeout
                )

            try:
                deleted = await self._call(len(chunk), attempt, sizer, request, trace_ids=chunk)
            except MlflowApiError as error:
                if error.outcome_unknown:
                    if ambiguous_added:
                        # Deleting by ID is idempotent: a chunk is ambiguous once, however
                        # many of its attempts went unanswered (_call counted this one too).
                        self.counts.ambiguous -= len(chunk)
                    ambiguous_added = len(chunk)
                decision = classify(error)
                if decision is RetryDecision.SHRINK and len(chunk) > 1:
                    # The halves inherit the doubt (and its count) and settle it themselves.
                    self.counts.ambiguous -= ambiguous_added
                    doubt = ambiguous_added > 0
                    half = math.ceil(len(chunk) / 2)
                    await self._delete_chunk(chunk[:half], in_doubt=doubt)
                    await self._delete_chunk(chunk[half:], in_doubt=doubt)
                    return
                if decision is not RetryDecision.RETRY:
                    raise
                await self._back_off(error, attempt, first_try_at)
                continue
            self._settle_ambiguity(ambiguous_added, deleted, len(chunk))
            return

    def _settle_ambiguity(self, ambiguous_added: int, deleted: int, size: int) -> None:
        """Deleting by ID is idempotent: a later answer narrows what a lost one may have done."""
        counts = self.counts
        if ambiguous_added:
            # The IDs the retry still found were not deleted by the lost call.
            counts.ambiguous -= ambiguous_added
            counts.ambiguous += size - deleted
        else:
            counts.not_found += size - deleted

    # -- one call -----------------------------------------------------------------------------

    async def _call(
        self,
        requested: int,
        attempt: int,
        sizer: BatchSizer,
        request: Callable[[], Awaitable[int]],
        *,
        trace_ids: Sequence[str] | None = None,
    ) -> int:
        """Send one delete through the scheduler; record it; return how many it deleted."""
        shared = self.shared
        counts = self.counts
        async with shared.scheduler.slot(self):
            await shared.scheduler.pace()
            if self.stopping:
                raise _StopRequested  # stopped while waiting for the gate: send nothing
            started = shared.clock()
            counts.calls += 1
            try:
                deleted = await request()
            except MlflowApiError as error:
                latency = shared.clock() - started
                outcome = outcome_for(error)
                self._record(started, requested, None, latency, attempt, outcome, error)
                if error.outcome_unknown:
                    counts.ambiguous += requested
                    counts.ambiguous_calls += 1
                counts.errors.append(f"{type(error).__name__}: {error}")
                if outcome is not None:
                    self._observe(sizer, requested, None, latency, outcome)
                    shared.scheduler.record(deleted=0, latency=latency, outcome=outcome)
                raise
            except BaseException:
                # Cancelled while in flight: the server may finish the call anyway.
                latency = shared.clock() - started
                counts.ambiguous += requested
                counts.ambiguous_calls += 1
                self._record(started, requested, None, latency, attempt, None, "cancelled")
                raise
            latency = shared.clock() - started
            counts.deleted += deleted
            shared.budget.record_success()
            self._record(started, requested, deleted, latency, attempt, Outcome.OK, None)
            self._observe(sizer, requested, deleted, latency, Outcome.OK)
            shared.scheduler.record(
                deleted=deleted,
                latency=latency,
                outcome=Outcome.OK,
                quiet_gap=shared.config.sleep_coefficient * latency,
            )
            shared.emit(
                BatchDeleted(
                    job=self.label,
                    experiment_id=self.resolved.experiment_id,
                    requested=requested,
                    deleted=deleted,
                    latency=latency,
                    attempt=attempt,
                    total_deleted=counts.deleted,
                    at=shared.clock() - shared.opened_at,
                    trace_ids=tuple(trace_ids) if trace_ids is not None else None,
                )
            )
            return deleted

    def _record(
        self,
        started: float,
        requested: int,
        deleted: int | None,
        latency: float,
        attempt: int,
        outcome: Outcome | None,
        error: BaseException | str | None,
    ) -> None:
        if outcome is not None:
            kind = outcome.value
        elif isinstance(error, str):
            kind = error
        else:
            kind = type(error).__name__ if error is not None else "error"
        unknown = (
            isinstance(error, MlflowApiError) and error.outcome_unknown
        ) or error == "cancelled"
        self.counts.batches.append(
            BatchRecord(
                started_at=started - self.shared.opened_at,
                requested=requested,
                deleted=deleted,
                latency=latency,
                attempt=attempt,
                outcome=kind,
                outcome_unknown=unknown,
            )
        )

    def _observe(
        self,
        sizer: BatchSizer,
        requested: int,
        deleted: int | None,
        latency: float,
        outcome: Outcome,
    ) -> None:
        old = sizer.size
        new = sizer.observe(requested=requested, deleted=deleted, latency=latency, outcome=outcome)
        if new != old:
            scope = "cutoff" if sizer is self.shared.cutoff_sizer else "ids"
            self.shared.emit(
                BatchSizeChanged(
                    scope=scope,
                    old=old,
                    new=new,
                    reason=outcome.value,
                    at=self.shared.clock() - self.shared.opened_at,
                )
            )

    async def _back_off(
        self,
        error: MlflowApiError,
        attempt: int,
        first_try_at: float,
        *,
        requested: int | None = None,
    ) -> None:
        """Wait before retrying, or raise when the policy or the run's budget says stop."""
        shared = self.shared
        policy = shared.config.retry
        delay = compute_backoff(
            policy, attempt, random_value=shared.random(), retry_after=error.retry_after
        )
        elapsed = shared.clock() - first_try_at
        if not should_retry(policy, attempt=attempt, elapsed=elapsed, next_delay=delay):
            raise error
        if not shared.budget.try_spend():
            raise RetryBudgetExhaustedError(
                f"the run's retry budget is spent ({shared.budget.retries} retries); "
                f"last error: {error}",
                last_error=error,
            ) from error
        self.counts.retries += 1
        if outcome_for(error) in (Outcome.THROTTLED, Outcome.UNAVAILABLE):
            shared.scheduler.push_back(job=self.label, retry_after=error.retry_after, pause=delay)
        shared.emit(
            RetryScheduled(
                job=self.label,
                experiment_id=self.resolved.experiment_id,
                requested=(error.batch_size or 0) if requested is None else requested,
                attempt=attempt,
                delay=delay,
                error=str(error),
                error_type=type(error).__name__,
                outcome_unknown=error.outcome_unknown,
                at=shared.clock() - shared.opened_at,
            )
        )
        await shared.sleep(delay)


class _StopRequested(Exception):
    """The job was stopped while a call waited for the gate; the call was not sent."""


def _leaves(group: BaseExceptionGroup[Exception]) -> list[Exception]:
    """The non-group exceptions inside ``group``, depth first."""
    leaves: list[Exception] = []
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            leaves.extend(_leaves(error))
        else:
            leaves.append(error)
    return leaves


@dataclass(frozen=True, slots=True)
class _Found:
    trace_id: str
    timestamp_ms: int
