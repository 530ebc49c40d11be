"""A job: one resolved spec run by its mode, and the handle the user holds.

:class:`JobRunner` owns a job's whole life: its state (pending, running, then completed,
cancelled or failed), its counts, its verification, and the events that start and end it.
Its :meth:`~JobRunner.run` never raises a job's failure: the failure is the job's outcome,
kept in its report, so sibling jobs go on. Everything else only reads it, or asks it through
a method (:meth:`~JobRunner.stop`, :meth:`~JobRunner.verified`).

What the job does is its mode's (:mod:`._modes`); how each call is made, retried and
counted is the :class:`~._calls.Caller`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
from pydantic import BaseModel, ConfigDict

from ._calls import Caller
from ._events import JobFinished, JobStarted
from ._ledger import ArtifactLedger, Counters
from ._modes import ArtifactSide, JobContext, Mode, mode_of
from ._reports import JobReport, JobState
from ._shared import SharedState
from ._specs import ResolvedSpec

__all__ = ["NOT_VERIFIED", "JobHandle", "JobRunner", "JobStatus", "Verification"]

NOT_VERIFIED = "not verified: the run was stopped"
"""The verification error of a job whose count was cut short by a stop (not a failure)."""


@dataclass(frozen=True)
class Verification:
    """What ``verify`` counted on the server around a job.

    Attributes:
        matched_before: Traces the job matched before it started.
        remaining: Traces it still matched after it ended.
        error: Why a count is missing (a failure, a stop), if one is.
    """

    matched_before: int | None = None
    remaining: int | None = None
    error: str | None = None


class JobStatus(BaseModel):
    """A live view of a running job."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str
    state: JobState
    deleted: int
    ambiguous: int
    calls: int
    retries: int
    batch_size: int
    elapsed: float


class JobRunner:
    """Runs one resolved spec through its mode and keeps its live state."""

    def __init__(self, resolved: ResolvedSpec, shared: SharedState) -> None:
        self.resolved = resolved
        self._shared = shared
        self.mode: Mode = mode_of(resolved.spec)
        self.counts = Counters(record_limit=shared.config.batch_record_limit)
        self.caller = Caller(
            shared,
            key=self,
            label=resolved.label,
            experiment_id=resolved.experiment_id,
            counts=self.counts,
        )
        self._artifacts: ArtifactSide | None = None
        if resolved.spec.with_artifacts:
            self._artifacts = ArtifactSide(
                ledger=ArtifactLedger(),
                caller=Caller(
                    shared,
                    key=self,
                    label=resolved.label,
                    experiment_id=resolved.experiment_id,
                    counts=Counters(record_limit=0),  # folder calls: never the trace counts
                ),
            )
        self._context = JobContext(
            resolved=resolved,
            caller=self.caller,
            counts=self.counts,
            shared=shared,
            sizer=(self.mode.sizer, shared.sizers[self.mode.sizer]),
            artifacts=self._artifacts,
        )
        self._state = JobState.PENDING
        self._error: BaseException | None = None
        self._started_at: float | None = None
        self._finished_at: float | None = None
        self._verification = Verification()

    @property
    def label(self) -> str:
        """The job's name in reports."""
        return self.resolved.label

    @property
    def state(self) -> JobState:
        """Where the job is in its life."""
        return self._state

    @property
    def stopping(self) -> bool:
        """True once a stop was asked for."""
        return self.caller.stopped

    def stop(self) -> None:
        """Send nothing new, wake every wait; calls in flight finish and are counted."""
        self.caller.stop()
        if self._artifacts is not None:
            self._artifacts.caller.stop()

    def verified(self, verification: Verification) -> None:
        """Keep what ``verify`` counted around the job."""
        self._verification = verification

    @property
    def current_batch_size(self) -> int:
        """The size the next call of this job would ask for."""
        _, sizer = self._context.sizer
        return sizer.size

    @property
    def elapsed(self) -> float:
        """Seconds the job has run (so far, or in all)."""
        if self._started_at is None:
            return 0.0
        end = self._finished_at if self._finished_at is not None else self._shared.runtime.clock()
        return end - self._started_at

    def report(self) -> JobReport:
        """A frozen snapshot of the job (records and error texts: the newest are kept)."""
        spec = self.resolved.spec
        counts = self.counts
        error = self._error
        return JobReport(
            label=self.label,
            experiment_id=self.resolved.experiment_id,
            mode=spec.mode,
            cutoff_millis=self.resolved.cutoff_millis,
            max_traces=spec.max_traces,
            state=self._state,
            deleted=counts.deleted,
            ambiguous=counts.ambiguous,
            ambiguous_calls=counts.ambiguous_calls,
            not_found=counts.not_found,
            requested_ids=len(spec.trace_ids) if spec.trace_ids is not None else None,
            calls=counts.calls,
            retries=counts.retries,
            errors=tuple(counts.errors),
            errors_dropped=counts.errors_total - len(counts.errors),
            error=str(error) if error is not None else None,
            error_type=type(error).__name__ if error is not None else None,
            batches=tuple(counts.batches),
            batches_dropped=counts.batches_total - len(counts.batches),
            elapsed=self.elapsed,
            matched_before=self._verification.matched_before,
            verified_remaining=self._verification.remaining,
            verification_error=self._verification.error,
            artifacts=None
            if self._artifacts is None
            else self._artifacts.ledger.report(retries=self._artifacts.caller.counts.retries),
        )

    async def run(self) -> JobReport:
        """Run the job to its end and return its final report.

        A failure of the job is its outcome (state ``failed``, the error in the report),
        not an exception; a cancel is re-raised after the job is recorded as cancelled.
        """
        runtime = self._shared.runtime
        self._state = JobState.RUNNING
        self._started_at = runtime.clock()
        self.caller.progressed()
        if self._artifacts is not None:
            self._artifacts.caller.progressed()
        self._shared.emit(
            JobStarted(
                job=self.label,
                experiment_id=self.resolved.experiment_id,
                mode=self.mode.name,
                cutoff_millis=self.resolved.cutoff_millis,
                at=self._started_at - runtime.opened_at,
            )
        )
        try:
            await self.mode.run(self._context)
        except anyio.get_cancelled_exc_class():
            self._state = JobState.CANCELLED
            raise
        except Exception as error:  # the job fails; its siblings go on
            self._error = error
            self._state = JobState.FAILED
        else:
            self._state = JobState.CANCELLED if self.stopping else JobState.COMPLETED
        finally:
            self._finish()
        return self.report()

    def never_ran(self) -> None:
        """The job was cancelled before it started: it ends now, having sent nothing."""
        if not self._state.finished:
            self._state = JobState.CANCELLED
            self._finish()

    def _finish(self) -> None:
        if not self._state.finished:
            self._state = JobState.CANCELLED
        runtime = self._shared.runtime
        self._finished_at = runtime.clock()
        self._shared.emit(
            JobFinished(report=self.report(), at=self._finished_at - runtime.opened_at)
        )


class JobHandle:
    """A submitted job: watch it, stop it, cancel it, wait for its report."""

    def __init__(self, runner: JobRunner) -> None:
        self._runner = runner
        self._done = anyio.Event()
        self._scope: anyio.CancelScope | None = None
        self._cancel_requested = False

    def __repr__(self) -> str:
        return f"<JobHandle {self.label!r} {self._runner.state.value}>"

    @property
    def label(self) -> str:
        """The job's name (its label, or the experiment)."""
        return self._runner.label

    @property
    def resolved(self) -> ResolvedSpec:
        """The spec as pinned at submission (experiment ID and cutoff)."""
        return self._runner.resolved

    @property
    def done(self) -> bool:
        """True once the job reached a final state."""
        return self._done.is_set()

    @property
    def status(self) -> JobStatus:
        """Deleted so far, calls, retries, current batch size and state (O(1): no records)."""
        runner = self._runner
        counts = runner.counts
        return JobStatus(
            label=runner.label,
            state=runner.state,
            deleted=counts.deleted,
            ambiguous=counts.ambiguous,
            calls=counts.calls,
            retries=counts.retries,
            batch_size=runner.current_batch_size,
            elapsed=runner.elapsed,
        )

    def report(self) -> JobReport:
        """A snapshot report (final once :attr:`done`)."""
        return self._runner.report()

    def stop(self) -> None:
        """Stop gracefully: send no new call, let calls in flight finish and count them.

        Every wait of the job (backoff, ``Retry-After``, pauses, the gate) ends at once.
        """
        self._runner.stop()

    def cancel(self) -> None:
        """Cancel now, including calls in flight (reported as outcome unknown)."""
        self._runner.stop()
        self._cancel_requested = True
        if self._scope is not None:
            self._scope.cancel()

    async def wait(self) -> JobReport:
        """Wait for the job to end and return its final report."""
        await self._done.wait()
        return self._runner.report()

    async def _run(self) -> None:
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self._cancel_requested:
                    scope.cancel()
                await self._runner.run()
        finally:
            self._runner.never_ran()  # a no-op unless it was cancelled before it started
            self._done.set()
