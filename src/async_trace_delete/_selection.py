"""Which experiments a job deletes in: named ones, or a selector resolved once at the start.

:class:`ExperimentSelector` (``DeleteSpec.experiments``) picks experiments by MLflow's
experiment search (``experiments/search``: ``name LIKE``, ``tags.<key> = value``, or all of
them), less the excluded names and IDs. :func:`expand` turns a spec into one spec per
experiment, *once*, before anything is deleted: an experiment created afterwards is not
touched by that run. Deleted experiments (lifecycle ``deleted``) are skipped with a note when
a selector finds them, and refused when named.

A retention tag (``DeleteSpec.retention_tag``) gives an experiment its own cutoff: its tag
holds a duration (``30d``, ``12h``) used as that experiment's ``older_than``; experiments
without the tag use the job's own cutoff. A tag that cannot be read is reported for that
experiment (skipped) and never read as "delete everything"; ``min_retention`` still applies
to every experiment's cutoff.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Self

from pydantic import ConfigDict, Field, StrictBool, field_validator, model_validator

from ._durations import parse_duration
from ._exceptions import GuardrailError, RuleError, UsageError
from ._messages import FieldMessage
from ._validated import ValidatedModel
from ._wire import Experiment

if TYPE_CHECKING:
    from ._specs import DeleteSpec

__all__ = ["ExperimentSelector", "Selection", "SkippedExperiment", "expand", "selected_label"]

_KEY = re.compile(r"[A-Za-z0-9_.\-]+")
_DIGITS = re.compile(r"[0-9]+")
DELETED = "deleted"


class ExperimentSelector(ValidatedModel):
    """Experiments chosen by MLflow's experiment search, resolved once when the job starts.

    Args:
        all_experiments: Every active experiment of the server.
        name_like: Names matching this MLflow ``LIKE`` pattern (``%`` any run of
            characters, ``_`` one character; case-sensitive), e.g. ``"chat-%"``.
        tags: Experiments whose tags hold all of these values (``{"team": "search"}``).
        exclude_names: Never these experiments (by name), whatever the rest selects.
        exclude_ids: Never these experiments (by ID).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    all_experiments: StrictBool = False
    name_like: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    exclude_names: tuple[str, ...] = ()
    exclude_ids: tuple[str, ...] = ()

    @field_validator("name_like")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise ValueError("must not be empty")
        if "'" in value or "\\" in value:
            raise ValueError("must not contain a quote or a backslash")
        return value

    @field_validator("tags")
    @classmethod
    def _tag_pairs(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if not _KEY.fullmatch(key):
                raise ValueError(
                    f"tag key {key!r} must be letters, digits, '_', '.' or '-' (non-empty)"
                )
            if not isinstance(text, str) or "'" in text or "\\" in text:
                raise ValueError(f"tag {key!r}: the value must be text without quotes")
        return value

    @field_validator("exclude_ids")
    @classmethod
    def _ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for experiment_id in value:
            if not _DIGITS.fullmatch(experiment_id):
                raise ValueError(f"{experiment_id!r} is not an experiment ID (whole numbers)")
        return value

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        narrowed = self.name_like is not None or bool(self.tags)
        if self.all_experiments and narrowed:
            raise RuleError(
                FieldMessage(
                    "{all_experiments} selects every experiment; {name_like} and "
                    "{tags} narrow the selection: give one or the other"
                )
            )
        if not self.all_experiments and not narrowed:
            raise RuleError(
                FieldMessage(
                    "an experiment selector needs {all_experiments}, {name_like} or {tags}"
                )
            )
        return self

    def filter_string(self) -> str | None:
        """The ``experiments/search`` filter (``None``: every experiment)."""
        clauses = []
        if self.name_like is not None:
            clauses.append(f"name LIKE '{self.name_like}'")
        for key, value in sorted(self.tags.items()):
            clauses.append(f"tags.`{key}` = '{value}'")
        return " AND ".join(clauses) or None

    def excludes(self, experiment: Experiment) -> bool:
        """Whether ``experiment`` is excluded by name or ID."""
        return experiment.name in self.exclude_names or experiment.experiment_id in self.exclude_ids

    def matches(self, experiment: Experiment) -> bool:
        """Whether an experiment the search answered is one this selector asked for (an
        answer that is not MLflow's must not widen the selection)."""
        if any(experiment.tags.get(key) != value for key, value in self.tags.items()):
            return False
        return self.name_like is None or _like(self.name_like, experiment.name)

    def describe(self) -> str:
        """The selector in a few words, for labels and messages."""
        if self.all_experiments:
            text = "all experiments"
        else:
            parts = []
            if self.name_like is not None:
                parts.append(f"name LIKE {self.name_like!r}")
            parts += [f"tag {key}={value}" for key, value in sorted(self.tags.items())]
            text = "experiments with " + " and ".join(parts)
        excluded = [*self.exclude_names, *self.exclude_ids]
        if excluded:
            text += f", except {', '.join(excluded)}"
        return text


def _like(pattern: str, text: str) -> bool:
    """SQL ``LIKE`` as MLflow's experiment search applies it (case-sensitive)."""
    regex = "".join(
        ".*" if char == "%" else "." if char == "_" else re.escape(char) for char in pattern
    )
    return re.fullmatch(regex, text, flags=re.DOTALL) is not None


@dataclass(frozen=True)
class SkippedExperiment:
    """An experiment a job's selector found and did not take, and why.

    Attributes:
        label: The job's label for it.
        experiment_id: The experiment.
        name: Its name.
        reason: Why it was left out (deleted, excluded, an unreadable retention tag, a
            retention shorter than ``min_retention``).
    """

    label: str
    experiment_id: str
    name: str
    reason: str


@dataclass(frozen=True)
class Selection:
    """What the specs of a run select: one resolved job per experiment, and the
    experiments their selectors left out."""

    resolved: tuple[Any, ...]  # ResolvedSpec (typed loosely: _specs imports this module)
    skipped: tuple[SkippedExperiment, ...]


def selected_label(spec: DeleteSpec, experiment: Experiment) -> str:
    """The label of one experiment of a selector job: ``<job label>/<experiment name>``."""
    return f"{spec.label}/{experiment.name}" if spec.label else experiment.name


ExperimentPages = Callable[[str | None, str, str | None], Awaitable[tuple[Any, str | None]]]


async def expand(
    spec: DeleteSpec,
    *,
    lookup: Callable[[], Awaitable[Experiment]],
    search: ExperimentPages,
    now_millis: int,
) -> tuple[list[tuple[DeleteSpec, Experiment]], list[SkippedExperiment]]:
    """One spec per experiment the job deletes in, pinned to the experiment's ID, and the
    experiments its selector left out.

    Args:
        spec: The job.
        lookup: Looks up the one experiment a spec names (not called for a selector).
        search: One page of ``experiments/search``: ``(filter, view_type, page_token) ->
            (experiments, next_token)``.
        now_millis: The time the job's cutoffs are pinned at.

    Raises:
        UsageError: a named experiment is deleted.
        GuardrailError: the job's own cutoff breaks a time rule.
    """
    spec.pin_cutoff(now_millis=now_millis)  # the job's own cutoff holds, tags or not
    selector = spec.experiments
    if selector is None:
        experiment = await lookup()
        if experiment.lifecycle_stage == DELETED:
            field = "experiment_id" if spec.experiment_id is not None else "experiment_name"
            raise UsageError(
                FieldMessage(
                    "{" + field + "}: experiment {found_name!r} (ID {found_id}) is deleted "
                    "(lifecycle_stage deleted); restore it first, or drop it from the job; "
                    "nothing was deleted",
                    found_name=experiment.name,
                    found_id=experiment.experiment_id,
                )
            )
        chosen = [experiment]
        skipped: list[SkippedExperiment] = []
    else:
        active = await _all_pages(search, selector.filter_string(), "ACTIVE_ONLY")
        deleted = await _all_pages(search, selector.filter_string(), "DELETED_ONLY")
        chosen = []
        skipped = [
            SkippedExperiment(
                selected_label(spec, e), e.experiment_id, e.name, "the experiment is deleted"
            )
            for e in deleted
            if e.lifecycle_stage == DELETED and selector.matches(e)
        ]
        for experiment in active:
            if experiment.lifecycle_stage == DELETED or not selector.matches(experiment):
                continue  # not what was asked for: never widened by an odd answer
            if selector.excludes(experiment):
                skipped.append(
                    SkippedExperiment(
                        selected_label(spec, experiment),
                        experiment.experiment_id,
                        experiment.name,
                        "excluded",
                    )
                )
                continue
            chosen.append(experiment)
    expanded: list[tuple[DeleteSpec, Experiment]] = []
    for experiment in chosen:
        one = _for_experiment(spec, experiment, now_millis)
        if isinstance(one, SkippedExperiment):
            skipped.append(one)
        else:
            expanded.append((one, experiment))
    return expanded, skipped


async def _all_pages(search: ExperimentPages, filter_string: str | None, view: str) -> list[Any]:
    found: list[Any] = []
    token: str | None = None
    while True:
        page, token = await search(filter_string, view, token)
        found.extend(page)
        if not token or not page:
            return found


def _for_experiment(
    spec: DeleteSpec, experiment: Experiment, now_millis: int
) -> DeleteSpec | SkippedExperiment:
    """The job on one experiment, with its retention tag's cutoff, or why it is skipped."""
    from ._specs import DeleteSpec

    tag = spec.retention_tag
    value = experiment.tags.get(tag) if tag is not None else None
    if spec.experiments is None and value is None:
        return spec  # a named experiment without the tag: the job as given
    fields: dict[str, Any] = spec.model_dump(exclude_none=True)
    if spec.experiments is not None:  # one job of the selection: named by its ID and label
        fields.pop("experiments")
        fields["experiment_id"] = experiment.experiment_id
        fields["label"] = selected_label(spec, experiment)
    if value is None:
        return DeleteSpec.model_validate(fields)
    label = fields.get("label") or spec.experiment
    retention = _retention(value)
    if isinstance(retention, str):
        return SkippedExperiment(
            label,
            experiment.experiment_id,
            experiment.name,
            f"its tag {tag}={value!r} is not a retention: {retention}; nothing is deleted in it",
        )
    fields.pop("max_timestamp_millis", None)
    fields["older_than"] = retention
    one = DeleteSpec.model_validate(fields)
    try:
        one.pin_cutoff(now_millis=now_millis)
    except GuardrailError as error:
        return SkippedExperiment(
            label,
            experiment.experiment_id,
            experiment.name,
            f"its tag {tag}={value!r}: {error}; nothing is deleted in it",
        )
    return one


def _retention(text: str) -> timedelta | str:
    """The duration a retention tag holds, or why it holds none."""
    try:
        duration = parse_duration(text)
    except ValueError as error:
        return str(error)
    if duration <= timedelta(0):
        return "a retention must be longer than zero"
    return duration
