"""Frozen reports: what a job and a run did, exactly.

Counts are split three ways and never guessed:

* ``deleted`` — confirmed by the server's answer;
* ``ambiguous`` — an upper bound on traces a call may have deleted although we never heard
  back (a timeout, a dropped connection, a gateway error, a cancel while in flight);
* ``not_found`` — requested IDs the server did not have (ID jobs only).
"""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict

from ._selection import SkippedExperiment
from ._specs import JobMode

__all__ = ["ArtifactReport", "BatchRecord", "JobReport", "JobState", "RunReport"]


class JobState(enum.StrEnum):
    """Where a job is in its life."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        """True for the three final states."""
        return self in {JobState.COMPLETED, JobState.CANCELLED, JobState.FAILED}


class BatchRecord(BaseModel):
    """One delete call (one attempt).

    Attributes:
        started_at: Seconds since the engine opened when the call was sent.
        requested: Traces asked for (``max_traces``, or the number of IDs).
        deleted: What the server answered; ``None`` when the call failed or its outcome is
            unknown.
        latency: Seconds the call took.
        attempt: 1 for a first try, 2+ for retries.
        outcome: ``"ok"`` or the failure kind (``"throttled"``, ``"timeout"``, ...).
        outcome_unknown: The server may have deleted up to ``requested`` traces anyway.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    started_at: float
    requested: int
    deleted: int | None
    latency: float
    attempt: int
    outcome: str
    outcome_unknown: bool = False


class ArtifactReport(BaseModel):
    """What happened to the artifact folders of a job's deleted traces (``with_artifacts``).

    Never mixed with the trace counts: a failed folder delete leaves ``deleted`` as it is.

    Attributes:
        deleted: Folders removed through the server's artifact API.
        failed: Folders whose removal failed (the trace is gone; the folder is an orphan
            that ``sweep-artifacts`` finds later).
        skipped: Folders left on purpose: out of the server's reach, a trace whose delete
            is not known to have happened, a tag naming another place, a stop.
        retries: Folder calls (listing, existence checks, removals) tried again; never in
            the job's own ``retries``.
        notes: Why folders were skipped or failed, one line per reason.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    deleted: int = 0
    failed: int = 0
    skipped: int = 0
    retries: int = 0
    notes: tuple[str, ...] = ()


class JobReport(BaseModel):
    """The final (or current) account of one job.

    ``batches`` and ``errors`` keep the newest records (``EngineConfig.batch_record_limit``
    calls, 100 error texts); ``batches_dropped`` / ``errors_dropped`` say how many older ones
    were let go. The counts are always over every call.

    ``verification_error`` is set when ``run(verify=True)`` could not count (a search failed,
    or the run was stopped first): the counts above still stand, only the check is missing.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str
    experiment_id: str | None
    mode: JobMode
    cutoff_millis: int | None
    max_traces: int | None
    state: JobState
    deleted: int
    ambiguous: int
    ambiguous_calls: int
    not_found: int
    requested_ids: int | None
    calls: int
    retries: int
    errors: tuple[str, ...]
    error: str | None
    error_type: str | None
    batches: tuple[BatchRecord, ...]
    elapsed: float
    matched_before: int | None = None
    verified_remaining: int | None = None
    verification_error: str | None = None
    batches_dropped: int = 0
    errors_dropped: int = 0
    artifacts: ArtifactReport | None = None
    """The artifact folders' account, for a ``with_artifacts`` job (else ``None``)."""

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """The batch-size trajectory: what each call asked for, in order."""
        return tuple(batch.requested for batch in self.batches)

    @property
    def verified_deleted(self) -> int | None:
        """What the server lost, by search before and after (``run(verify=True)``)."""
        if self.matched_before is None or self.verified_remaining is None:
            return None
        return self.matched_before - self.verified_remaining

    @property
    def verified_consistent(self) -> bool | None:
        """Whether the server's loss lies within ``[deleted, deleted + ambiguous]``.

        ``None`` when not verified. A mismatch is reported, never hidden: it means another
        client deleted or wrote matching traces meanwhile, or an ambiguous call did work.
        """
        lost = self.verified_deleted
        if lost is None:
            return None
        return self.deleted <= lost <= self.deleted + self.ambiguous

    @property
    def ok(self) -> bool:
        """True when the job completed with every count confirmed (and verified, if asked)."""
        return (
            self.state is JobState.COMPLETED
            and self.ambiguous == 0
            and self.verification_error is None
        )


class RunReport(BaseModel):
    """The account of a whole ``Engine.run``: its jobs and their totals."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    jobs: tuple[JobReport, ...]
    elapsed: float
    skipped: tuple[SkippedExperiment, ...] = ()
    """Experiments the specs' selectors found and left out, with the reason."""

    @property
    def deleted(self) -> int:
        """Traces confirmed deleted, over all jobs."""
        return sum(job.deleted for job in self.jobs)

    @property
    def ambiguous(self) -> int:
        """Upper bound of traces possibly deleted without confirmation, over all jobs."""
        return sum(job.ambiguous for job in self.jobs)

    @property
    def calls(self) -> int:
        """Delete calls made (attempts included)."""
        return sum(job.calls for job in self.jobs)

    @property
    def retries(self) -> int:
        """Retries made, over all jobs."""
        return sum(job.retries for job in self.jobs)

    @property
    def artifacts(self) -> ArtifactReport | None:
        """The artifact folders' account over the ``with_artifacts`` jobs (``None``: none)."""
        reports = [job.artifacts for job in self.jobs if job.artifacts is not None]
        if not reports:
            return None
        return ArtifactReport(
            deleted=sum(r.deleted for r in reports),
            failed=sum(r.failed for r in reports),
            skipped=sum(r.skipped for r in reports),
            retries=sum(r.retries for r in reports),
            notes=tuple(dict.fromkeys(note for r in reports for note in r.notes)),
        )

    @property
    def failed(self) -> tuple[JobReport, ...]:
        """The jobs that failed."""
        return tuple(job for job in self.jobs if job.state is JobState.FAILED)

    @property
    def verification_failed(self) -> tuple[JobReport, ...]:
        """The jobs whose verification could not be done (``verification_error``)."""
        return tuple(job for job in self.jobs if job.verification_error is not None)

    @property
    def ok(self) -> bool:
        """True when every job completed with every count confirmed."""
        return all(job.ok for job in self.jobs)

    @property
    def throughput(self) -> float:
        """Confirmed deletions per second over the run."""
        return self.deleted / self.elapsed if self.elapsed > 0 else 0.0
