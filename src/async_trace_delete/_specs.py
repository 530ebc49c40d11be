"""Job specs: what to delete, validated before any HTTP call.

One frozen model, :class:`DeleteSpec`, encodes every deletion mode of MLflow's docs and the
rules of ``MlflowClient.delete_traces``:

* **cutoff** — ``max_timestamp_millis`` (or ``older_than``, resolved once at submission):
  delete traces with ``timestamp_ms <= cutoff``, oldest first, optionally capped by
  ``max_traces``;
* **IDs** — ``trace_ids``: delete exactly these (never with a cutoff, never with
  ``max_traces``, as in MLflow);
* **selective** — ``filter_string`` (MLflow search grammar, e.g. ``status = 'ERROR'``),
  optionally narrowed by a cutoff and capped by ``max_traces``.

Every error names the field and the rule. Nothing here talks to the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Any, Literal, Self

from pydantic import (
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from ._checks import is_int
from ._durations import format_duration, format_instant
from ._exceptions import ConflictingJobsError, GuardrailError, RuleError
from ._messages import FieldMessage
from ._selection import ExperimentSelector
from ._validated import ValidatedModel

__all__ = [
    "DeleteSpec",
    "JobMode",
    "ResolvedSpec",
    "conflict_message",
    "one_job_per_experiment",
]

JobMode = Literal["cutoff", "ids", "matching"]

PositiveStrictInt = Annotated[StrictInt, Field(gt=0)]

# A cutoff further in the future than this is a mistake (clock skew allowance, in ms).
_FUTURE_TOLERANCE_MS = 60_000


class DeleteSpec(ValidatedModel):
    """One cleanup job on one experiment.

    Args:
        experiment_id: The experiment's ID. Exactly one of ``experiment_id`` and
            ``experiment_name``.
        experiment_name: The experiment's name, resolved to its ID at submission.
        experiments: Instead of one experiment, those an :class:`ExperimentSelector` picks
            (all, by name pattern, by tags, less exclusions), resolved once when the run
            starts into one job per experiment (labelled ``<label>/<experiment name>``).
        max_timestamp_millis: Delete traces whose ``timestamp_ms`` is at or before this
            (milliseconds since the epoch, > 0: some servers read 0 as "delete everything").
        older_than: The same cutoff given as an age, resolved once at submission.
        trace_ids: Delete exactly these trace IDs (deduplicated, order kept).
        filter_string: Delete traces matching this MLflow search filter.
        max_traces: Delete at most this many traces in the whole job (not with IDs).
        expect_at_most: Guardrail: refuse the job, before deleting anything, if more than this
            many traces would be deleted (counted by a dry-run search first).
        min_retention: Guardrail: refuse a cutoff newer than ``now - min_retention``.
        allow_match_all: Allow a selective job with an empty filter and no cutoff (it would
            delete the whole experiment).
        force: Override ``min_retention``.
        retention_tag: An experiment whose tag of this name holds a duration (``30d``)
            uses it as its ``older_than``; the others use the job's own cutoff (required).
            A tag that cannot be read leaves that experiment out (reported), never reads as
            "delete everything"; ``min_retention`` applies to every experiment's cutoff.
        with_artifacts: Also remove each deleted trace's artifact folder
            (``<experiment>/traces/<trace_id>``, where ``traces.json`` lives) through the
            server's artifact API, once the trace is known to be gone; ``delete-traces``
            alone leaves it behind.
        label: A name for this job in reports and logs (defaults to the experiment).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    experiment_id: str | None = None
    experiment_name: str | None = None
    experiments: ExperimentSelector | None = None
    max_timestamp_millis: PositiveStrictInt | None = None
    older_than: timedelta | None = None
    trace_ids: tuple[str, ...] | None = None
    filter_string: str | None = None
    max_traces: PositiveStrictInt | None = None
    expect_at_most: Annotated[StrictInt, Field(ge=0)] | None = None
    min_retention: timedelta | None = None
    allow_match_all: StrictBool = False
    force: StrictBool = False
    retention_tag: str | None = None
    with_artifacts: StrictBool = False
    label: str | None = None

    @field_validator("experiment_id", mode="before")
    @classmethod
    def _experiment_id_text(cls, value: Any) -> Any:
        if is_int(value):
            return str(value)
        return value

    @field_validator("experiment_id", "experiment_name")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        if value is not None and value != value.strip():
            raise ValueError("must not start or end with whitespace")
        return value

    @field_validator("older_than", "min_retention")
    @classmethod
    def _positive_duration(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("must be a positive duration")
        return value

    @field_validator("trace_ids", mode="before")
    @classmethod
    def _ids_sequence(cls, value: Any) -> Any:
        if isinstance(value, str):
            # pydantic reports ValueError (not TypeError) as a validation error on the field.
            raise ValueError("must be a list of trace IDs, not a single string")  # noqa: TRY004
        return value

    @field_validator("trace_ids")
    @classmethod
    def _dedupe_ids(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must contain at least one trace ID")
        for position, trace_id in enumerate(value):
            if not trace_id or trace_id != trace_id.strip():
                raise ValueError(
                    f"trace ID at position {position} is empty or has surrounding whitespace"
                )
        return tuple(dict.fromkeys(value))

    @field_validator("filter_string")
    @classmethod
    def _filter_text(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return value.strip()

    @model_validator(mode="after")
    def _mlflow_rules(self) -> Self:
        named = [self.experiment_id, self.experiment_name, self.experiments]
        if sum(value is not None for value in named) != 1:
            raise RuleError(
                FieldMessage(
                    "give exactly one of {experiment_id}, {experiment_name} and an experiment "
                    "selector ({experiments})"
                )
            )
        if self.experiments is not None and self.trace_ids is not None:
            raise RuleError(
                FieldMessage(
                    "{trace_ids} belong to one experiment: name it with {experiment_id} or "
                    "{experiment_name}, not a selector"
                )
            )
        if self.retention_tag is not None:
            if not self.retention_tag.strip():
                raise RuleError(FieldMessage("{retention_tag}: must not be empty"))
            if not (self.max_timestamp_millis is not None or self.older_than is not None):
                raise RuleError(
                    FieldMessage(
                        "{retention_tag} needs the job's own cutoff ({older_than} or "
                        "{max_timestamp_millis}) for the experiments without the tag"
                    )
                )
        has_cutoff = self._has_cutoff
        if self.max_timestamp_millis is not None and self.older_than is not None:
            raise RuleError(
                FieldMessage(
                    "give {max_timestamp_millis} or {older_than}, not both "
                    "(they are the same cutoff)"
                )
            )
        if self.trace_ids is not None:
            if has_cutoff:
                raise RuleError(
                    FieldMessage(
                        "{trace_ids} cannot be combined with a cutoff ({max_timestamp_millis} "
                        "/ {older_than}): MLflow deletes by cutoff or by IDs, never both"
                    )
                )
            if self.max_traces is not None:
                raise RuleError(
                    FieldMessage("{max_traces} cannot be used with {trace_ids} (MLflow's rule)")
                )
            if self.filter_string is not None:
                raise RuleError(FieldMessage("{filter_string} cannot be combined with {trace_ids}"))
        elif not has_cutoff and self.filter_string is None:
            raise RuleError(
                FieldMessage(
                    "there is nothing to select traces by: give a cutoff ({older_than} or "
                    "{max_timestamp_millis}), {trace_ids}, or a {filter_string} (a filter "
                    "alone is enough: it deletes what it matches)"
                )
            )
        if (
            self.filter_string is not None
            and not self.filter_string
            and not has_cutoff
            and not self.allow_match_all
        ):
            raise RuleError(
                FieldMessage(
                    "{filter_string} is empty and there is no cutoff: this would delete every "
                    "trace of the experiment; {allow_match_all:set} if that is what you want"
                )
            )
        return self

    @property
    def mode(self) -> JobMode:
        """Which deletion path the job takes."""
        if self.trace_ids is not None:
            return "ids"
        if self.filter_string or (self.filter_string is not None and not self._has_cutoff):
            return "matching"  # includes an allowed match-all (empty filter, no cutoff)
        return "cutoff"

    @property
    def _has_cutoff(self) -> bool:
        return self.max_timestamp_millis is not None or self.older_than is not None

    @property
    def experiment(self) -> str:
        """The experiment as the user named it (ID, name, or the selector in words)."""
        if self.experiments is not None:
            return self.experiments.describe()
        return self.experiment_id if self.experiment_id is not None else str(self.experiment_name)

    def pin_cutoff(self, *, now_millis: int) -> int | None:
        """The cutoff at ``now_millis`` (``older_than`` resolved), checked against the
        time-dependent rules; ``None`` for a job without one. Needs no experiment.

        Raises:
            GuardrailError: the cutoff is in the future, or newer than ``min_retention``
                allows and ``force`` is not set.
        """
        cutoff = self.max_timestamp_millis
        if self.older_than is not None:
            # Exact integer milliseconds, rounded up (older): floats can land 1 ms too new.
            cutoff = now_millis - _ceil_millis(self.older_than)
            if cutoff <= 0:
                raise GuardrailError(
                    FieldMessage(
                        "{older_than}: {age} reaches back before 1970-01-01T00:00:00Z (now is "
                        "{now}); a cutoff must be after it",
                        age=format_duration(self.older_than),
                        now=format_instant(now_millis),
                    )
                )
        if cutoff is None and self.min_retention is not None and not self.force:
            raise GuardrailError(
                FieldMessage(
                    "{min_retention}: a selective job without a cutoff can delete traces of any "
                    "age; add a cutoff ({max_timestamp_millis} / {older_than}) or {force:pass}"
                )
            )
        if cutoff is not None:
            if cutoff > now_millis + _FUTURE_TOLERANCE_MS:
                raise GuardrailError(
                    FieldMessage(
                        "{max_timestamp_millis}: the cutoff {cutoff}{cutoff_ms} is in the future "
                        "(now is {now}); a future cutoff would delete traces being written "
                        "right now",
                        cutoff=format_instant(cutoff),
                        cutoff_ms=_beside(cutoff),
                        now=format_instant(now_millis),
                    )
                )
            if (
                self.min_retention is not None
                and not self.force
                and cutoff > now_millis - _ceil_millis(self.min_retention)
            ):
                raise GuardrailError(
                    FieldMessage(
                        "{min_retention}: the cutoff {cutoff} keeps less than {retention} of "
                        "traces (it must be at or before {latest}, {retention} before now); "
                        "{force:pass} to override",
                        cutoff=format_instant(cutoff),
                        retention=format_duration(self.min_retention),
                        latest=format_instant(now_millis - _ceil_millis(self.min_retention)),
                    )
                )
        return cutoff

    def resolve(self, *, now_millis: int, experiment_id: str | None = None) -> ResolvedSpec:
        """Pin the cutoff and the experiment ID; check the time-dependent rules.

        Args:
            now_millis: The current time, read once at submission.
            experiment_id: The ID the experiment name resolved to (for name-based specs).

        Raises:
            GuardrailError: the cutoff is in the future, or newer than ``min_retention``
                allows and ``force`` is not set.
        """
        resolved_id = self.experiment_id if self.experiment_id is not None else experiment_id
        if resolved_id is None or self.experiments is not None:
            raise ValueError(
                "experiment_name or a selector must be resolved to an ID before resolve()"
            )
        cutoff = self.pin_cutoff(now_millis=now_millis)
        return ResolvedSpec(
            spec=self,
            experiment_id=resolved_id,
            cutoff_millis=cutoff,
            # A selective job without a cutoff is bounded by its submission: a trace written
            # while it runs must not be deleted by a job that was shown (and counted) before.
            bound_millis=cutoff if cutoff is not None or self.trace_ids is not None else now_millis,
        )


def _beside(millis: int) -> str:
    """`` (<n> ms)``, the epoch milliseconds shown beside a time (none when the time could
    only be shown as milliseconds anyway)."""
    return "" if format_instant(millis).endswith(" ms") else f" ({millis} ms)"


def _ceil_millis(duration: timedelta) -> int:
    """``duration`` in whole milliseconds, rounded up, without float arithmetic."""
    return -(-duration // timedelta(milliseconds=1))


class ResolvedSpec(ValidatedModel):
    """A spec pinned at submission: concrete experiment ID, cutoff and bound.

    Attributes:
        spec: The spec as given.
        experiment_id: The experiment's ID (a name resolved once).
        cutoff_millis: The cutoff the user asked for, pinned (``older_than`` resolved).
        bound_millis: The newest ``timestamp_ms`` the job may delete: the cutoff, or for a
            selective job without one the time of submission. ``None`` for ID jobs.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    spec: DeleteSpec
    experiment_id: str
    cutoff_millis: int | None
    bound_millis: int | None = None

    @property
    def label(self) -> str:
        """The job's name in reports."""
        return self.spec.label or self.spec.experiment

    @property
    def cap(self) -> int | None:
        """The most this job may delete, counting possibly-deleted traces: the smaller of
        ``max_traces`` and ``expect_at_most`` (a guardrail is a hard cap while deleting)."""
        caps = [c for c in (self.spec.max_traces, self.spec.expect_at_most) if c is not None]
        return min(caps) if caps else None

    @property
    def upper_bound(self) -> int | None:
        """The newest ``timestamp_ms`` the job may delete (``bound_millis``, or the cutoff of
        a spec pinned without one)."""
        return self.bound_millis if self.bound_millis is not None else self.cutoff_millis

    def search_filter(self) -> str:
        """The MLflow search filter selecting exactly what this job deletes (not for IDs)."""
        clauses = []
        if self.spec.filter_string:
            clauses.append(self.spec.filter_string)
        if (bound := self.upper_bound) is not None:
            clauses.append(f"timestamp_ms <= {bound}")
        return " AND ".join(clauses)

    def selects(self, experiment_id: str | None, timestamp_ms: int) -> bool:
        """Whether a trace a search answered is inside this job: its experiment (when the
        answer names one) and at or before the job's bound."""
        if experiment_id is not None and experiment_id != self.experiment_id:
            return False
        bound = self.upper_bound
        return bound is None or timestamp_ms <= bound

    def conflict_key(self) -> tuple[object, ...]:
        """What must be equal for two jobs on one experiment to be the same job."""
        spec = self.spec
        return (
            spec.mode,
            self.cutoff_millis,
            spec.trace_ids,
            spec.filter_string,
            spec.max_traces,
            spec.expect_at_most,
            spec.with_artifacts,
        )


def one_job_per_experiment(resolved: Sequence[ResolvedSpec]) -> list[ResolvedSpec]:
    """Collapse identical jobs on one experiment; refuse different ones.

    Raises:
        ConflictingJobsError: two jobs select the same experiment differently.
    """
    kept: dict[str, ResolvedSpec] = {}
    for item in resolved:
        first = kept.get(item.experiment_id)
        if first is None:
            kept[item.experiment_id] = item
        elif first.conflict_key() != item.conflict_key():
            raise ConflictingJobsError(conflict_message(first, item))
    return list(kept.values())


def conflict_message(first: ResolvedSpec, second: ResolvedSpec) -> str:
    return (
        f"jobs {first.label!r} and {second.label!r} both delete from experiment "  # noqa: S608 - a message, not SQL
        f"{first.experiment_id} with different selections ({_describe(first)} / "
        f"{_describe(second)}); a run holds one job per experiment (two caps would add up, "
        "two cutoff jobs would race): merge them into one job, or run them one after the "
        "other; nothing was deleted"
    )


def _describe(resolved: ResolvedSpec) -> str:
    spec = resolved.spec
    parts: list[str] = [spec.mode]
    if resolved.cutoff_millis is not None:
        parts.append(f"cutoff {format_instant(resolved.cutoff_millis)}")
    if spec.filter_string:
        parts.append(f"filter {spec.filter_string!r}")
    if spec.trace_ids is not None:
        parts.append(f"{len(spec.trace_ids)} IDs")
    if spec.max_traces is not None:
        parts.append(f"max_traces {spec.max_traces}")
    if spec.expect_at_most is not None:
        parts.append(f"expect_at_most {spec.expect_at_most}")
    if spec.with_artifacts:
        parts.append("with artifacts")
    return ", ".join(parts)
