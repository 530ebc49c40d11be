"""One attempt loop for every server call: the gate, the retries, the accounting.

Every call the engine makes (a delete, a search page, an experiment lookup) goes through
:meth:`Caller.delete` or :meth:`Caller.read`, one loop, so there is one place where a call

* waits for an in-flight slot, the shared pause, the quiet gap and the shared rate (searches
  too: a search is load on the same server);
* is classified when it fails (:func:`._retry.classify`) and retried with backoff and jitter;
* counts against the job's progress: a job fails on a permanent error, or when it has made
  no progress for ``EngineConfig.progress_timeout`` (never because it retried "too often":
  a spent run-wide retry budget slows every job down instead);
* feeds the batch sizer, the concurrency controller and the hooks (deletes only);
* is counted as *ambiguous* when its answer is lost, through a :class:`Doubt` that knows
  whether the same traces were already in doubt (deleting by ID is idempotent).

Every wait (slot, pause, rate, backoff) ends at once when the caller is stopped, so a stop
never sleeps out a ``Retry-After``; a call already sent is let finish and counted.

This is stamina's ``retry_context`` and Netflix concurrency-limits' ``Listener`` in one: the
completion of one call updates the limit, the sizer, the budget and the events in one place.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import anyio

from ._batching import BatchSizer, Outcome
from ._client import TracePage, TracesClient
from ._config import EngineConfig
from ._events import BatchDeleted, BatchSizeChanged, Event, RetryScheduled
from ._exceptions import MlflowApiError, NoProgressError
from ._reports import BatchRecord
from ._retry import RetryBudget, RetryDecision, classify, compute_backoff, outcome_for, should_retry
from ._scheduler import Scheduler

__all__ = ["Caller", "Counters", "Delete", "Doubt", "SharedState", "StopRequested"]

T = TypeVar("T")

_MAX_ERRORS_KEPT = 100


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
class Counters:
    """A job's live counts. Records and error texts are bounded: the newest are kept."""

    record_limit: int = 1_000
    deleted: int = 0
    ambiguous: int = 0
    ambiguous_calls: int = 0
    not_found: int = 0
    calls: int = 0
    retries: int = 0
    errors: deque[str] = field(default_factory=lambda: deque(maxlen=_MAX_ERRORS_KEPT))
    errors_total: int = 0
    batches: deque[BatchRecord] = field(default_factory=deque)
    batches_total: int = 0

    def __post_init__(self) -> None:
        self.batches = deque(maxlen=self.record_limit)

    def add_error(self, error: BaseException) -> None:
        """Keep the text of one failure (the newest ``_MAX_ERRORS_KEPT``)."""
        self.errors.append(f"{type(error).__name__}: {error}")
        self.errors_total += 1

    def add_record(self, record: BatchRecord) -> None:
        """Keep one call's record (the newest ``record_limit``)."""
        self.batches.append(record)
        self.batches_total += 1


class Doubt:
    """What lost answers may have deleted, for one logical delete, counted exactly once.

    A cutoff call is not idempotent: every lost call may have deleted up to what it asked
    for, so each one adds to ``ambiguous``. A chunk of IDs is: however many of its attempts
    go unanswered, its IDs are in doubt once, and a later answer settles how many are left.

    Args:
        counts: The job's counters (``ambiguous`` is kept there).
        size: How many traces the delete asks for.
        idempotent: True for a chunk of IDs.
        counted: The IDs are already counted as ambiguous (inherited from a split chunk).
    """

    def __init__(
        self, counts: Counters, size: int, *, idempotent: bool, counted: bool = False
    ) -> None:
        self._counts = counts
        self._size = size
        self._idempotent = idempotent
        self._counted = counted

    def lost(self) -> None:
        """One attempt's answer was lost (timeout, reset, gateway 5xx, cancel in flight)."""
        self._counts.ambiguous_calls += 1
        if not self._idempotent:
            self._counts.ambiguous += self._size
        elif not self._counted:
            self._counts.ambiguous += self._size
            self._counted = True

    def settle(self, deleted: int) -> None:
        """A later attempt answered: ``deleted`` of the IDs were still there and are gone."""
        if not self._idempotent:
            return
        if self._counted:
            # The `deleted` IDs were still there: the lost calls did not delete them. The
            # others stay ambiguous (deleted by a lost call, or never there).
            self._counts.ambiguous -= deleted
            self._counted = False
        else:
            self._counts.not_found += self._size - deleted

    def split(self, first: int) -> tuple[Doubt, Doubt]:
        """Hand the doubt on to two halves (``first`` IDs and the rest) that settle it.

        What is counted stays counted until each half settles its own part, so a half that
        fails (a 403, a stop) leaves its IDs ambiguous.
        """
        halves = (
            Doubt(self._counts, first, idempotent=True, counted=self._counted),
            Doubt(self._counts, self._size - first, idempotent=True, counted=self._counted),
        )
        self._counted = False  # the halves own it now
        return halves


@dataclass(frozen=True)
class Delete:
    """One delete call to make (and retry).

    Attributes:
        send: Makes the request once; returns what the server deleted.
        requested: Traces it asks for (``max_traces``, or the number of IDs).
        sizer: The batch sizer it feeds.
        doubt: Its ambiguity ledger.
        trace_ids: The IDs a delete by ID sends (for the ``BatchDeleted`` event).
    """

    send: Callable[[], Awaitable[int]]
    requested: int
    sizer: BatchSizer
    doubt: Doubt
    trace_ids: Sequence[str] | None = None


@dataclass
class _Attempt:
    """One attempt of a call: its number and when it was sent (the engine's clock)."""

    number: int
    sent_at: float | None = None


class StopRequested(Exception):
    """The caller was stopped (or halted) before the call was sent: nothing was sent."""


class Caller:
    """Makes a job's server calls through the gate, retrying and accounting for each.

    Args:
        shared: The engine's shared state.
        key: Whose turn it is in the scheduler's round robin (the job).
        label: The job's name in events.
        experiment_id: The experiment in events.
        counts: Where calls, retries, errors and deletions are counted.
    """

    def __init__(
        self,
        shared: SharedState,
        *,
        key: object,
        label: str,
        experiment_id: str | None,
        counts: Counters,
    ) -> None:
        self._shared = shared
        self._key = key
        self._label = label
        self._experiment_id = experiment_id
        self.counts = counts
        self._stop = anyio.Event()
        self._halt = anyio.Event()
        self.failure: BaseException | None = None
        self.last_progress = shared.clock()

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    @property
    def quitting(self) -> bool:
        """Stopped or halted: nothing new is sent."""
        return self._stop.is_set() or self._halt.is_set()

    def stop(self) -> None:
        """Send nothing new; wake every wait now. Calls in flight finish and are counted."""
        self._stop.set()

    def halt(self, error: BaseException) -> None:
        """A part of the job failed: its other parts send nothing new."""
        if self.failure is None:
            self.failure = error
        self._halt.set()

    # -- the two kinds of call ------------------------------------------------------------------

    async def delete(self, build: Callable[[], Delete | None]) -> tuple[int, int] | None:
        """Make one delete, retrying what can succeed; return ``(deleted, requested)``.

        ``build`` makes the call afresh for every attempt, so a retry asks only for what is
        left (a cutoff job's cap, less what a lost answer may have deleted); it returns
        ``None`` when nothing is left to ask for, and so does this method.

        Raises:
            StopRequested: stopped (or halted) before a call was sent.
            MlflowApiError: a permanent failure, a ``SHRINK`` the caller must answer, or a
                policy limit (``max_attempts`` / ``max_elapsed``) when the policy sets one.
            NoProgressError: transient failures and no progress for ``progress_timeout``.
        """

        async def once(attempt: _Attempt) -> tuple[int, int] | None:
            operation = build()
            if operation is None:
                return None
            deleted = await self._delete_once(operation, attempt)
            return deleted, operation.requested

        return await self._retrying(once)

    async def search_traces(
        self,
        experiment_id: str,
        *,
        filter_string: str | None = None,
        max_results: int = 500,
        page_token: str | None = None,
    ) -> TracePage:
        """One search page through the gate, retried (the :class:`TracesClient` signature)."""
        client = self._shared.client

        def send() -> Awaitable[TracePage]:
            return client.search_traces(
                experiment_id,
                filter_string=filter_string,
                max_results=max_results,
                page_token=page_token,
            )

        return await self.read(send)

    async def read(self, send: Callable[[], Awaitable[T]]) -> T:
        """Make one read-only call (a search, a lookup) through the gate, retried."""
        return await self._retrying(lambda attempt: self._read_once(send, attempt))

    # -- the loop -------------------------------------------------------------------------------

    async def _retrying(self, once: Callable[[_Attempt], Awaitable[T]]) -> T:
        first_try_at = self._shared.clock()
        number = 0
        while True:
            number += 1
            attempt = _Attempt(number)
            try:
                return await once(attempt)
            except MlflowApiError as error:
                if classify(error) is not RetryDecision.RETRY:
                    raise
                await self._back_off(error, attempt, first_try_at)

    async def _gated(self, attempt: _Attempt, send: Callable[[], Awaitable[T]]) -> T:
        """Take a slot, wait for the pace, then send; nothing is sent once stopped."""
        scheduler = self._shared.scheduler
        if not await self._wait(lambda: scheduler.acquire(self._key)):
            raise StopRequested
        try:
            if not await self._wait(scheduler.pace) or self.quitting:
                raise StopRequested  # stopped while waiting for the gate: send nothing
            attempt.sent_at = self._shared.clock()
            return await send()
        finally:
            scheduler.release()

    async def _read_once(self, send: Callable[[], Awaitable[T]], attempt: _Attempt) -> T:
        try:
            answer = await self._gated(attempt, send)
        except MlflowApiError as error:
            self.counts.add_error(error)
            raise
        self.last_progress = self._shared.clock()
        return answer

    async def _delete_once(self, operation: Delete, attempt: _Attempt) -> int:
        shared = self._shared
        counts = self.counts
        sizer = operation.sizer
        doubt = operation.doubt
        requested = operation.requested
        started = 0.0

        async def send() -> int:
            nonlocal started
            started = shared.clock()
            counts.calls += 1
            return await operation.send()

        try:
            deleted = await self._gated(attempt, send)
        except MlflowApiError as error:
            latency = shared.clock() - started
            outcome = outcome_for(error)
            if error.outcome_unknown:
                doubt.lost()
            self._record(started, requested, None, latency, attempt.number, outcome, error)
            counts.add_error(error)
            if outcome is not None:
                self._observe(sizer, requested, None, latency, outcome)
                shared.scheduler.record(deleted=0, latency=latency, outcome=outcome)
            raise
        except BaseException:  # a stop before sending, or a cancel
            if attempt.sent_at is not None:
                # Cancelled while in flight: the server may finish the call anyway.
                doubt.lost()
                latency = shared.clock() - started
                self._record(started, requested, None, latency, attempt.number, None, "cancelled")
            raise
        latency = shared.clock() - started
        self.last_progress = shared.clock()
        counts.deleted += deleted
        doubt.settle(deleted)
        shared.budget.record_success()
        self._record(started, requested, deleted, latency, attempt.number, Outcome.OK, None)
        self._observe(sizer, requested, deleted, latency, Outcome.OK)
        shared.scheduler.record(
            deleted=deleted,
            latency=latency,
            outcome=Outcome.OK,
            quiet_gap=shared.config.sleep_coefficient * latency,
        )
        shared.emit(
            BatchDeleted(
                job=self._label,
                experiment_id=self._experiment_id or "",
                requested=requested,
                deleted=deleted,
                latency=latency,
                attempt=attempt.number,
                total_deleted=counts.deleted,
                at=shared.clock() - shared.opened_at,
                trace_ids=tuple(operation.trace_ids) if operation.trace_ids is not None else None,
            )
        )
        return deleted

    # -- waiting ------------------------------------------------------------------------------

    async def _wait(self, wait: Callable[[], Awaitable[None]]) -> bool:
        """Run ``wait`` unless the caller stops first; return whether it ran to its end.

        A stop cancels the wait at once (a backoff, a ``Retry-After``, a pause, a slot).
        """
        if self.quitting:
            return False
        finished = False
        async with anyio.create_task_group() as group:

            async def watch(event: anyio.Event) -> None:
                await event.wait()
                group.cancel_scope.cancel()

            group.start_soon(watch, self._stop)
            group.start_soon(watch, self._halt)
            await wait()
            finished = True
            group.cancel_scope.cancel()
        return finished

    async def _back_off(
        self,
        error: MlflowApiError,
        attempt: _Attempt,
        first_try_at: float,
    ) -> None:
        """Wait before retrying; raise when the job made no progress for too long."""
        shared = self._shared
        config = shared.config
        policy = config.retry
        now = shared.clock()
        delay = compute_backoff(
            policy, attempt.number, random_value=shared.random(), retry_after=error.retry_after
        )
        if not should_retry(
            policy, attempt=attempt.number, elapsed=now - first_try_at, next_delay=delay
        ):
            raise error
        if now + delay - self.last_progress > config.progress_timeout:
            seconds = now - self.last_progress
            raise NoProgressError(
                f"no progress for {seconds:.0f} s (progress_timeout is "
                f"{config.progress_timeout:g} s): the server kept failing; last error: {error}",
                last_error=error,
                seconds=seconds,
            ) from error
        self.counts.retries += 1
        over_budget = not shared.budget.try_spend()
        if over_budget or outcome_for(error) in (Outcome.THROTTLED, Outcome.UNAVAILABLE):
            # A spent budget throttles instead of failing: everyone slows down.
            shared.scheduler.push_back(
                job=self._label,
                retry_after=error.retry_after,
                pause=delay,
                sent_at=attempt.sent_at,
            )
        shared.emit(
            RetryScheduled(
                job=self._label,
                experiment_id=self._experiment_id or "",
                requested=error.batch_size or 0,
                attempt=attempt.number,
                delay=delay,
                error=str(error),
                error_type=type(error).__name__,
                outcome_unknown=error.outcome_unknown,
                at=now - shared.opened_at,
            )
        )
        if not await self._wait(lambda: shared.sleep(delay)):
            raise StopRequested

    # -- bookkeeping ----------------------------------------------------------------------------

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
        self.counts.add_record(
            BatchRecord(
                started_at=started - self._shared.opened_at,
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
        shared = self._shared
        old = sizer.size
        new = sizer.observe(requested=requested, deleted=deleted, latency=latency, outcome=outcome)
        if new != old:
            scope = "cutoff" if sizer is shared.cutoff_sizer else "ids"
            shared.emit(
                BatchSizeChanged(
                    scope=scope,
                    old=old,
                    new=new,
                    reason=outcome.value,
                    at=shared.clock() - shared.opened_at,
                )
            )
