"""One attempt loop for every server call: the gate, the retries, the accounting.

Every call the engine makes (a delete, a search page, an experiment lookup) goes through
:meth:`Caller.delete` or :meth:`Caller.read`, one loop, so there is one place where a call

* waits for an in-flight slot, the shared pause, the quiet gap and its rate (searches too: a
  search is load on the same server; reads have their own rate, ``read_rate_limit``);
* is classified when it fails (:func:`._retry.classify`) and retried with backoff and jitter;
* counts against the job's progress: a job fails on a permanent error, or when it has made
  no progress for ``EngineConfig.progress_timeout`` (never because it retried "too often":
  a spent run-wide retry budget slows every job down instead); a server never reached at
  all is given up after :data:`FIRST_CONTACT_SECONDS`;
* feeds the batch sizer, the concurrency controller and the hooks (deletes only);
* is counted as *ambiguous* when its answer is lost, through a :class:`Doubt` that knows
  whether the same traces were already in doubt (deleting by ID is idempotent).

Every wait (slot, pause, rate, backoff) ends at once when the caller is stopped, so a stop
never sleeps out a ``Retry-After``; a call already sent is let finish and counted.

This is stamina's ``retry_context`` and Netflix concurrency-limits' ``Listener`` in one: the
completion of one call updates the limit, the sizer, the budget and the events in one place.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import anyio

from ._client import TracePage
from ._completion import Attempt, Completion, Delete
from ._counting import CountQuery
from ._events import RetryScheduled
from ._exceptions import ConnectError, MlflowApiError, NoProgressError
from ._ledger import Counters
from ._outcomes import Outcome, RetryDecision
from ._retry import classify, compute_backoff, outcome_for, should_retry
from ._scheduler import CallKind
from ._shared import SharedState

__all__ = ["Caller", "Delete", "StopRequested"]  # Delete re-exported for the modes

# A server this engine has never reached (connection refused, no such host, TLS) is retried
# this long, not progress_timeout: an address that never answered is a wrong address far more
# often than a restart, and a person at a terminal should hear of it in seconds. Once the server
# has answered anything, a lost connection is retried until progress_timeout (a restart).
FIRST_CONTACT_SECONDS = 15.0

T = TypeVar("T")


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
        self._last_progress = shared.runtime.clock()

    @property
    def shared(self) -> SharedState:
        """The engine's shared state the calls go through."""
        return self._shared

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

    def progressed(self) -> None:
        """Count now as progress (the job starts; a call succeeded)."""
        self._last_progress = self._shared.runtime.clock()

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

        async def once(attempt: Attempt) -> tuple[int, int] | None:
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
        order_by: Sequence[str] = ("timestamp_ms ASC",),
    ) -> TracePage:
        """One search page through the gate, retried (the :class:`TracesClient` signature)."""
        client = self._shared.client

        def send() -> Awaitable[TracePage]:
            return client.search_traces(
                experiment_id,
                filter_string=filter_string,
                max_results=max_results,
                page_token=page_token,
                order_by=order_by,
            )

        return await self.read(send)

    async def query_count(self, query: CountQuery) -> int:
        """One exact count through the gate, retried (the :class:`TracesClient` signature)."""
        client = self._shared.client
        return await self.read(lambda: client.query_count(query))

    async def read(self, send: Callable[[], Awaitable[T]], *, files: bool = False) -> T:
        """Make one call that deletes no trace (a search, a lookup, an artifact call)
        through the gate, retried.

        Reads are paced by ``EngineConfig.read_rate_limit``, not the deletes' rate.

        Args:
            send: Makes the call (afresh for every attempt).
            files: It is a call of the artifact API: paced by its own rate
                (``EngineConfig.artifact_rate_limit``), through its own slots and the pauses.
        """
        return await self._retrying(lambda attempt: self._read_once(send, attempt, files))

    # -- the loop -------------------------------------------------------------------------------

    async def _retrying(self, once: Callable[[Attempt], Awaitable[T]]) -> T:
        first_try_at = self._shared.runtime.clock()
        number = 0
        while True:
            number += 1
            attempt = Attempt(number)
            try:
                return await once(attempt)
            except MlflowApiError as error:
                if classify(error) is not RetryDecision.RETRY:
                    raise
                await self._back_off(error, attempt, first_try_at)

    async def _gated(self, attempt: Attempt, send: Callable[[], Awaitable[T]], kind: CallKind) -> T:
        """Take a slot, wait for the pace, then send; nothing is sent once stopped.

        An artifact API call (``FILES``) takes one of that API's own slots instead; a read
        may take slots a delete could not (see :class:`~._scheduler.Scheduler`)."""
        scheduler = self._shared.scheduler
        read = kind is CallKind.READ
        if kind is CallKind.FILES:
            acquire, release = scheduler.acquire_file_slot, scheduler.release_file_slot
        else:
            acquire = functools.partial(scheduler.acquire, self._key, read=read)
            release = functools.partial(scheduler.release, read=read)
        if not await self._wait(acquire):
            raise StopRequested
        try:
            if not await self._wait(lambda: scheduler.pace(kind)) or self.quitting:
                raise StopRequested  # stopped while waiting for the gate: send nothing
            attempt.sent_at = self._shared.runtime.clock()
            return await send()
        finally:
            release()

    async def _read_once(
        self, send: Callable[[], Awaitable[T]], attempt: Attempt, files: bool
    ) -> T:
        try:
            answer = await self._gated(attempt, send, CallKind.FILES if files else CallKind.READ)
        except MlflowApiError as error:
            self.counts.add_error(error)
            raise
        self.progressed()
        return answer

    async def _delete_once(self, operation: Delete, attempt: Attempt) -> int:
        listener: Completion | None = None

        async def send() -> int:
            nonlocal listener
            listener = Completion(
                self._shared,
                self.counts,
                operation,
                attempt,
                job=self._label,
                experiment_id=self._experiment_id,
                progressed=self.progressed,
            )
            return await operation.send()

        try:
            deleted = await self._gated(attempt, send, CallKind.DELETE)
        except MlflowApiError as error:
            if listener is not None:
                listener.failed(error)
            else:  # failed before it was sent (cannot happen today: the gate raises no API error)
                self.counts.add_error(error)
            raise
        except BaseException:  # a stop before sending, or a cancel in flight
            if listener is not None:
                listener.dropped()
            raise
        assert listener is not None
        listener.succeeded(deleted)
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
        attempt: Attempt,
        first_try_at: float,
    ) -> None:
        """Wait before retrying; raise when the job made no progress for too long."""
        shared = self._shared
        runtime = shared.runtime
        config = shared.config
        policy = config.retry
        now = runtime.clock()
        delay = compute_backoff(
            policy, attempt.number, random_value=runtime.random(), retry_after=error.retry_after
        )
        if not should_retry(
            policy, attempt=attempt.number, elapsed=now - first_try_at, next_delay=delay
        ):
            raise error
        if (
            isinstance(error, ConnectError)
            and not shared.client.answered
            and now + delay - first_try_at > FIRST_CONTACT_SECONDS
        ):
            raise error  # never reached at all: a wrong address, not a restart (see above)
        if now + delay - self._last_progress > config.progress_timeout:
            seconds = now - self._last_progress
            raise NoProgressError(
                f"no progress for {seconds:.0f} s (progress_timeout is "
                f"{config.progress_timeout:g} s): the server kept failing; last error: {error}",
                last_error=error,
                seconds=seconds,
            ) from error
        self.counts.retried()
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
                at=now - runtime.opened_at,
            )
        )
        if not await self._wait(lambda: runtime.sleep(delay)):
            raise StopRequested
