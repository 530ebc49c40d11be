"""What a deletion mode is, and what it gets to run a job.

A :class:`Mode` owns everything that differs between MLflow's ways of deleting: how a job
turns into delete calls (:meth:`Mode.run`), which traces a dry run and ``verify`` count
(:meth:`Mode.matching`), and which of the engine's shared batch sizers its calls feed
(:attr:`Mode.sizer`). The engine, planning, reports and the CLI ask the mode; none of them
compares mode names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .._calls import Caller
from .._client import TracePage, TraceSummary, iter_pages
from .._controls import Sizer
from .._counting import CountQuery
from .._exceptions import GuardrailError, OutOfSelectionError
from .._ledger import ArtifactLedger, Counters
from .._messages import FieldMessage
from .._shared import SharedState
from .._specs import ResolvedSpec

if TYPE_CHECKING:
    from .chunks import ChunkListener

__all__ = [
    "ID_SEARCH_CHUNK",
    "ArtifactSide",
    "JobContext",
    "Mode",
    "TraceSearcher",
    "check_selected",
    "ids_filter",
    "search_all",
    "search_named",
]

ID_SEARCH_CHUNK = 500  # IDs per `request_id IN (...)` search (one full page)


@dataclass(frozen=True)
class ArtifactSide:
    """What a ``with_artifacts`` job needs for its folders.

    Attributes:
        ledger: The folders' counts.
        caller: The folder calls' own caller (same gate, rate and budget): a job that
            failed still removes the folders of what it deleted; a stop stops it too.
    """

    ledger: ArtifactLedger
    caller: Caller


class TraceSearcher(Protocol):
    """Fetches one search page: a :class:`TracesClient`, or a job's gated, retried
    :class:`~.._calls.Caller` (which is what plans and verification use)."""

    async def search_traces(
        self,
        experiment_id: str,
        *,
        filter_string: str | None = None,
        max_results: int = 500,
        page_token: str | None = None,
        order_by: Sequence[str] = ("timestamp_ms ASC",),
    ) -> TracePage: ...

    async def query_count(self, query: CountQuery) -> int: ...


@dataclass(frozen=True)
class JobContext:
    """What a mode needs to run one job.

    Attributes:
        resolved: The job's spec, pinned.
        caller: Makes the job's calls (gate, retries, accounting).
        counts: The job's live counts.
        shared: The engine's shared state (client, config).
        sizer: The shared batch sizer the mode's calls feed, with its name.
        artifacts: The folders' side of a ``with_artifacts`` job (else ``None``).
    """

    resolved: ResolvedSpec
    caller: Caller
    counts: Counters
    shared: SharedState
    sizer: tuple[str, Sizer]
    artifacts: ArtifactSide | None = None

    @property
    def label(self) -> str:
        """The job's name."""
        return self.resolved.label

    @property
    def cap_left(self) -> int | None:
        """What is left of the job's cap, counting possibly-deleted traces as deleted."""
        cap = self.resolved.cap
        if cap is None:
            return None
        return cap - self.counts.deleted - self.counts.ambiguous

    @property
    def guard(self) -> int | None:
        """``expect_at_most`` when it is the job's binding cap (below ``max_traces``)."""
        spec = self.resolved.spec
        guard = spec.expect_at_most
        if guard is None or (spec.max_traces is not None and spec.max_traces <= guard):
            return None  # max_traces is the cap: reaching it is the job's end, not a refusal
        return guard

    def guardrail_error(self, guard: int) -> GuardrailError:
        """The job reached ``expect_at_most`` and more still match."""
        counts = self.counts
        return GuardrailError(
            FieldMessage(
                "{expect_at_most}: job {label!r} reached its limit of {guard} traces "
                "({deleted} deleted, {ambiguous} possibly deleted) and more still match "
                "(written during the run?); it stopped there",
                label=self.label,
                guard=guard,
                deleted=counts.deleted,
                ambiguous=counts.ambiguous,
            )
        )


class Mode(Protocol):
    """One of MLflow's ways of deleting traces (see :mod:`.._modes`)."""

    @property
    def name(self) -> str:
        """The mode's name in specs, reports and JSON (``DeleteSpec.mode``)."""

    @property
    def sizer(self) -> str:
        """Which of the engine's shared batch sizers its calls feed (``"cutoff"``/``"ids"``)."""

    @property
    def names_ids(self) -> bool:
        """True when the job deletes IDs the user named (a rerun can skip confirmed ones)."""

    def run(self, job: JobContext) -> Awaitable[None]:
        """Delete what the job selects; raise what made it fail."""

    def matching(
        self, searcher: TraceSearcher, resolved: ResolvedSpec, page_size: int
    ) -> AsyncIterator[TraceSummary]:
        """Every trace the job selects now, by search (dry runs and ``verify``)."""

    def count_query(self, resolved: ResolvedSpec) -> CountQuery | None:
        """The one-request exact count of what the job selects, if the server's metrics
        endpoint can express it (else counts page through :meth:`matching`)."""

    def run_with_folders(
        self, job: JobContext, listener: ChunkListener, holders: Sequence[str]
    ) -> Awaitable[None]:
        """Delete what the job selects as :meth:`run` does, but telling ``listener`` each
        trace (as a search answered it, with its tags) before its delete, and how each
        delete ended (``with_artifacts``). ``holders``: the trace IDs that have a folder."""


def ids_filter(ids: Sequence[str]) -> str:
    """The search filter selecting exactly ``ids`` (``request_id IN (...)``)."""
    quoted = ", ".join("'" + trace_id.replace("'", "''") + "'" for trace_id in ids)
    return f"request_id IN ({quoted})"


def check_selected(job: JobContext, trace: TraceSummary) -> None:
    """Refuse a trace a search answered that the job must not delete (another experiment,
    or newer than its bound): the answer is not MLflow's.

    Raises:
        OutOfSelectionError: it is outside the job.
    """
    resolved = job.resolved
    if not resolved.selects(trace.experiment_id, trace.timestamp_ms):
        raise OutOfSelectionError(
            f"search answered trace {trace.trace_id!r} (experiment "
            f"{trace.experiment_id}, timestamp_ms {trace.timestamp_ms}), which "
            f"job {job.label!r} must not delete (experiment "
            f"{resolved.experiment_id}, timestamp_ms <= {resolved.upper_bound}); "
            "the answer is not MLflow's (a proxy or a cache?), stopping",
            experiment_id=resolved.experiment_id,
        )


async def search_named(
    job: JobContext, ids: Sequence[str], selection: str | None
) -> list[TraceSummary]:
    """The traces of ``ids`` (at most :data:`ID_SEARCH_CHUNK`) that the job's experiment
    holds, and that ``selection`` (a search filter) selects too, each checked.

    Raises:
        OutOfSelectionError: the answer holds a trace not asked for, or outside the job.
    """
    wanted = set(ids)
    query = ids_filter(ids) if not selection else f"{selection} AND {ids_filter(ids)}"
    found = []
    async for trace in search_all(job.caller, job.resolved.experiment_id, query, ID_SEARCH_CHUNK):
        if trace.trace_id not in wanted:
            raise OutOfSelectionError(
                f"search answered trace {trace.trace_id!r}, which job {job.label!r} did not "
                "ask for; the answer is not MLflow's (a proxy or a cache?), stopping",
                experiment_id=job.resolved.experiment_id,
            )
        check_selected(job, trace)
        found.append(trace)
    return found


def search_all(
    searcher: TraceSearcher, experiment_id: str, filter_string: str | None, page_size: int
) -> AsyncIterator[TraceSummary]:
    """Every trace a search filter matches, page by page."""

    def fetch(token: str | None) -> Awaitable[TracePage]:
        return searcher.search_traces(
            experiment_id, filter_string=filter_string, max_results=page_size, page_token=token
        )

    return iter_pages(fetch)
