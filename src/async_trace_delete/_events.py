"""Events the engine emits to pluggable hooks, and the stdlib-logging hook.

A hook is any callable taking one event. The engine calls hooks synchronously, in order, from
its own task: keep them quick. A hook that raises is logged and ignored: a broken progress bar
must not leave a deletion half-reported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ._reports import JobReport

__all__ = [
    "BatchDeleted",
    "BatchOutcomeUnknown",
    "BatchSizeChanged",
    "ConcurrencyChanged",
    "Event",
    "FoldersSwept",
    "ForegroundChanged",
    "Hook",
    "JobFinished",
    "JobStarted",
    "LoggingHook",
    "RetryScheduled",
    "Throttled",
]


@dataclass(frozen=True, slots=True)
class JobStarted:
    """A job was resolved and started."""

    job: str
    experiment_id: str
    mode: str
    cutoff_millis: int | None
    at: float


@dataclass(frozen=True, slots=True)
class BatchDeleted:
    """A delete call answered.

    ``trace_ids`` is the chunk of an ID or selective job (``None`` for a cutoff call): after
    this event every one of them is gone from the server, which is what a resumable ID run
    records.
    """

    job: str
    experiment_id: str
    requested: int
    deleted: int
    latency: float
    attempt: int
    total_deleted: int
    at: float
    trace_ids: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class BatchOutcomeUnknown:
    """A delete call's answer was lost (a timeout, a dropped connection, a gateway's 5xx, a
    cancel in flight): the server may have done it. Sent when it happens."""

    job: str
    experiment_id: str
    requested: int
    attempt: int
    outcome: str
    latency: float
    at: float


@dataclass(frozen=True, slots=True)
class RetryScheduled:
    """A call failed and will be tried again after ``delay`` seconds."""

    job: str
    experiment_id: str
    requested: int
    attempt: int
    delay: float
    error: str
    error_type: str
    outcome_unknown: bool
    at: float


@dataclass(frozen=True, slots=True)
class BatchSizeChanged:
    """The shared batch sizer chose a new size."""

    scope: str
    old: int
    new: int
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class ConcurrencyChanged:
    """The engine-wide number of calls in flight changed."""

    old: int
    new: int
    at: float


@dataclass(frozen=True, slots=True)
class Throttled:
    """The server pushed back (429/503): every job pauses and the shared rate drops."""

    job: str
    retry_after: float | None
    pause: float
    rate: float
    at: float


@dataclass(frozen=True, slots=True)
class ForegroundChanged:
    """The engine's share of the server moved, after a canary (``foreground_budget``).

    Attributes:
        share: The share in force, in (0, 1]: batches, duty cycle and calls in flight are
            scaled by it.
        canary_latency: Seconds the canary that moved it took.
        budget: The budget in force (seconds).
    """

    share: float
    canary_latency: float
    budget: float
    at: float


@dataclass(frozen=True, slots=True)
class JobFinished:
    """A job reached a final state."""

    report: JobReport
    at: float


@dataclass(frozen=True, slots=True)
class FoldersSwept:
    """Progress of a sweep in one experiment (after each check of up to 500 folders)."""

    experiment_id: str
    folders: int
    checked: int
    orphans: int
    deleted: int
    done: bool
    at: float


Event = (
    JobStarted
    | BatchDeleted
    | BatchOutcomeUnknown
    | RetryScheduled
    | BatchSizeChanged
    | ConcurrencyChanged
    | Throttled
    | ForegroundChanged
    | JobFinished
    | FoldersSwept
)
Hook = Callable[[Event], None]


class LoggingHook:
    """Writes events to a stdlib logger (``async_trace_delete`` by default)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("async_trace_delete")

    def __call__(self, event: Event) -> None:
        log = self.logger
        match event:
            case JobStarted():
                log.info(
                    "job %s started: experiment %s, mode %s, cutoff %s",
                    event.job,
                    event.experiment_id,
                    event.mode,
                    event.cutoff_millis,
                )
            case BatchDeleted():
                log.debug(
                    "job %s: deleted %d of %d in %.3fs (attempt %d, total %d)",
                    event.job,
                    event.deleted,
                    event.requested,
                    event.latency,
                    event.attempt,
                    event.total_deleted,
                )
            case RetryScheduled():
                log.warning(
                    "job %s: attempt %d failed (%s: %s)%s; retrying in %.2fs",
                    event.job,
                    event.attempt,
                    event.error_type,
                    event.error,
                    " — outcome unknown" if event.outcome_unknown else "",
                    event.delay,
                )
            case BatchOutcomeUnknown():
                log.warning(
                    "job %s: the answer to a call of %d traces was lost (%s): it may have "
                    "deleted them",
                    event.job,
                    event.requested,
                    event.outcome,
                )
            case BatchSizeChanged():
                log.debug(
                    "%s batch size %d -> %d (%s)", event.scope, event.old, event.new, event.reason
                )
            case ConcurrencyChanged():
                log.info("calls in flight %d -> %d", event.old, event.new)
            case Throttled():
                log.warning(
                    "job %s: server pushed back; pausing %.2fs, shared rate now %.2f/s",
                    event.job,
                    event.pause,
                    event.rate,
                )
            case ForegroundChanged():
                log.info(
                    "other clients' canary took %.2fs (budget %.2fs): the engine now takes "
                    "%.0f%% of the server",
                    event.canary_latency,
                    event.budget,
                    100 * event.share,
                )
            case JobFinished():
                report = event.report
                log.info(
                    "job %s %s: deleted %d (ambiguous %d) in %d calls, %d retries, %.2fs%s",
                    report.label,
                    report.state.value,
                    report.deleted,
                    report.ambiguous,
                    report.calls,
                    report.retries,
                    report.elapsed,
                    f": {report.error}" if report.error else "",
                )
