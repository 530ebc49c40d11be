"""One delete call: what to send, which attempt it is, and what its completion feeds.

:class:`Completion` is the completion listener of one sent delete (concurrency-limits'
``Limiter.Listener``): the one place where a finished call updates the counts and the
ambiguity ledger, the per-call record, the batch sizer, the concurrency limit and the shared
rate, the retry budget and the events.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ._controls import Sizer
from ._events import BatchDeleted, BatchOutcomeUnknown, BatchSizeChanged
from ._exceptions import MlflowApiError
from ._ledger import Counters, Doubt
from ._outcomes import Outcome
from ._reports import BatchRecord
from ._retry import outcome_for
from ._shared import SharedState

__all__ = ["Attempt", "Completion", "Delete"]


@dataclass(frozen=True)
class Delete:
    """One delete call to make (and retry).

    Attributes:
        send: Makes the request once; returns what the server deleted.
        requested: Traces it asks for (``max_traces``, or the number of IDs).
        sizer: The batch sizer it feeds, and its name in events.
        doubt: Its ambiguity ledger.
        trace_ids: The IDs a delete by ID sends (for the ``BatchDeleted`` event).
    """

    send: Callable[[], Awaitable[int]]
    requested: int
    sizer: tuple[str, Sizer]
    doubt: Doubt
    trace_ids: Sequence[str] | None = None


@dataclass
class Attempt:
    """One attempt of a call: its number and when it was sent (the engine's clock)."""

    number: int
    sent_at: float | None = None


class Completion:
    """The completion listener of one sent delete (concurrency-limits' ``Limiter.Listener``).

    Created when the call is sent; exactly one of :meth:`succeeded`, :meth:`failed` and
    :meth:`dropped` is then called, and it feeds everything a finished call feeds, in one
    place: the counts and the ambiguity ledger, the per-call record, the batch sizer, the
    concurrency limit and the shared rate, the retry budget and the events.
    """

    def __init__(
        self,
        shared: SharedState,
        counts: Counters,
        operation: Delete,
        attempt: Attempt,
        *,
        job: str,
        experiment_id: str | None,
        progressed: Callable[[], None],
    ) -> None:
        self._shared = shared
        self._counts = counts
        self._operation = operation
        self._attempt = attempt
        self._job = job
        self._experiment_id = experiment_id or ""
        self._progressed = progressed
        self._started = shared.runtime.clock()
        counts.sent()

    def succeeded(self, deleted: int) -> None:
        """The server answered: ``deleted`` traces are gone."""
        shared, operation, counts = self._shared, self._operation, self._counts
        latency = self._latency()
        self._progressed()
        counts.confirmed(deleted)
        operation.doubt.settle(deleted)
        shared.budget.record_success()
        self._record(deleted=deleted, latency=latency, outcome=Outcome.OK.value, unknown=False)
        self._observe(deleted, latency, Outcome.OK)
        shared.scheduler.record(
            deleted=deleted,
            latency=latency,
            outcome=Outcome.OK,
            quiet_gap=shared.scheduler.quiet_gap(
                latency, shared.config.sleep_coefficient, shared.config.min_sleep
            ),
        )
        shared.emit(
            BatchDeleted(
                job=self._job,
                experiment_id=self._experiment_id,
                requested=operation.requested,
                deleted=deleted,
                latency=latency,
                attempt=self._attempt.number,
                total_deleted=counts.deleted,
                at=shared.runtime.since_open(),
                trace_ids=tuple(operation.trace_ids) if operation.trace_ids is not None else None,
            )
        )

    def failed(self, error: MlflowApiError) -> None:
        """The call failed with an answer (or the loss of one) the error describes."""
        latency = self._latency()
        outcome = outcome_for(error)
        if error.outcome_unknown:
            self._operation.doubt.lost()
        kind = outcome.value if outcome is not None else type(error).__name__
        self._record(deleted=None, latency=latency, outcome=kind, unknown=error.outcome_unknown)
        if error.outcome_unknown:
            self._lost(kind, latency)
        self._counts.add_error(error)
        if outcome is not None:
            self._observe(None, latency, outcome)
            self._shared.scheduler.record(deleted=0, latency=latency, outcome=outcome)

    def dropped(self) -> None:
        """Cancelled in flight: the server may finish the call anyway."""
        self._operation.doubt.lost()
        latency = self._latency()
        self._record(deleted=None, latency=latency, outcome="cancelled", unknown=True)
        self._lost("cancelled", latency)

    def _lost(self, outcome: str, latency: float) -> None:
        self._shared.emit(
            BatchOutcomeUnknown(
                job=self._job,
                experiment_id=self._experiment_id,
                requested=self._operation.requested,
                attempt=self._attempt.number,
                outcome=outcome,
                latency=latency,
                at=self._shared.runtime.since_open(),
            )
        )

    def _latency(self) -> float:
        return self._shared.runtime.clock() - self._started

    def _record(self, *, deleted: int | None, latency: float, outcome: str, unknown: bool) -> None:
        self._counts.add_record(
            BatchRecord(
                started_at=self._started - self._shared.runtime.opened_at,
                requested=self._operation.requested,
                deleted=deleted,
                latency=latency,
                attempt=self._attempt.number,
                outcome=outcome,
                outcome_unknown=unknown,
            )
        )

    def _observe(self, deleted: int | None, latency: float, outcome: Outcome) -> None:
        scope, sizer = self._operation.sizer
        old = sizer.size
        new = sizer.observe(
            requested=self._operation.requested, deleted=deleted, latency=latency, outcome=outcome
        )
        if new != old:
            self._shared.emit(
                BatchSizeChanged(
                    scope=scope,
                    old=old,
                    new=new,
                    reason=outcome.value,
                    at=self._shared.runtime.since_open(),
                )
            )
