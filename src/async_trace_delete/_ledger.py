"""A job's accounting: its live counts, and what lost answers may have deleted.

* :class:`Counters` — deleted, ambiguous, not found, calls, retries, errors and per-call
  records (bounded: the newest are kept);
* :class:`Doubt` — the ambiguity ledger of one logical delete, so that a chunk of IDs whose
  answers were lost several times is in doubt once, and a split hands the doubt to its halves.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ._reports import ArtifactReport, BatchRecord

__all__ = ["ArtifactLedger", "Counters", "Doubt"]

_MAX_ERRORS_KEPT = 100
_MAX_NOTES_KEPT = 10


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

    def sent(self) -> None:
        """One delete call was sent."""
        self.calls += 1

    def retried(self) -> None:
        """One failed call will be tried again."""
        self.retries += 1

    def confirmed(self, deleted: int) -> None:
        """The server answered that ``deleted`` traces are gone."""
        self.deleted += deleted

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

    @property
    def in_doubt(self) -> bool:
        """Whether a lost answer may have deleted these IDs (a chunk whose every attempt
        failed for certain, or was never sent, deleted nothing)."""
        return self._counted

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


@dataclass
class ArtifactLedger:
    """A ``with_artifacts`` job's live folder counts (see :class:`ArtifactReport`)."""

    deleted: int = 0
    failed: int = 0
    skipped: int = 0
    notes: dict[str, None] = field(default_factory=dict)  # an ordered set of reasons

    def note(self, text: str) -> None:
        """Keep one reason (the first ``_MAX_NOTES_KEPT`` distinct ones)."""
        if len(self.notes) < _MAX_NOTES_KEPT:
            self.notes[text] = None

    def skip(self, count: int, reason: str) -> None:
        """``count`` folders are left on purpose, for ``reason``."""
        if count > 0:
            self.skipped += count
            self.note(reason)

    def fail(self, reason: str) -> None:
        """One folder's removal failed."""
        self.failed += 1
        self.note(reason)

    def report(self, *, retries: int = 0) -> ArtifactReport:
        """A frozen copy (``retries``: of the folder calls, counted by their caller)."""
        return ArtifactReport(
            deleted=self.deleted,
            failed=self.failed,
            skipped=self.skipped,
            retries=retries,
            notes=tuple(self.notes),
        )
