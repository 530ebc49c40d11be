"""The CLI's inputs: human values and library errors, translated both ways.

The CLI adds no rules of its own. A job definition is "these experiments x one selection";
each experiment becomes one :class:`DeleteSpec` with exactly the fields the user gave (or,
for experiments picked by a selector, ``--all-experiments`` and the like, one spec holding
the :class:`ExperimentSelector`, which the library expands once per run), and
:class:`EngineConfig` gets the pacing flags 1:1. This module translates values written the
human way (``7d``, ``2026-11-01T00:00:00Z``, a file of IDs) into those fields, and the
library's validation errors back into the names the user typed (``--older-than``, or
``jobs[2]: older_than`` in a policy file).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from .._config import ClientConfig, EngineConfig, redact_url
from .._durations import parse_duration
from .._exceptions import GuardrailError, SpecError, UsageError
from .._specs import DeleteSpec
from .names import ENGINE_OPTIONS, SELECTOR_FIELDS, Namer
from .server import ServerSource, server_json, server_line
from .shell import shell_join

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "PROG",
    "BadInputError",
    "Invocation",
    "JobDefinition",
    "build_engine_config",
    "build_specs",
    "check_cutoffs",
    "describe_guardrail",
    "parse_duration",
    "parse_instant",
    "parse_tag",
    "parse_trace_ids",
    "read_trace_ids",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
PROG = "async-trace-delete"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class BadInputError(UsageError):
    """Input the CLI refuses before sending anything; the message names the flag or key."""


@dataclass(frozen=True)
class JobDefinition:
    """One job as the user wrote it: experiments x one selection.

    Attributes:
        origin: Where it was written, for errors (``""`` for the command line).
        name: The job's name (policy files), used as a label prefix.
        experiment_ids: Experiments by ID.
        experiment_names: Experiments by name.
        fields: DeleteSpec fields other than the experiment and label.
        names: DeleteSpec field -> what the user typed for it (flag or key).
        selector: :class:`ExperimentSelector` fields (``all_experiments``, ``name_like``,
            ``tags``, ``exclude_names``, ``exclude_ids``), only those the user gave: the job
            selects its experiments instead of naming them.
    """

    origin: str
    name: str | None
    experiment_ids: tuple[str, ...]
    experiment_names: tuple[str, ...]
    fields: Mapping[str, Any]
    names: Mapping[str, str]
    selector: Mapping[str, Any] = field(default_factory=dict)

    @property
    def selecting(self) -> list[str]:
        """The selector fields given that choose experiments (not the exclusions)."""
        return [
            key
            for key in ("all_experiments", "name_like", "tags")
            if key in self.selector and self.selector[key] is not False
        ]

    @property
    def excluding(self) -> list[str]:
        """The exclusion fields given."""
        return [key for key in ("exclude_names", "exclude_ids") if key in self.selector]

    @property
    def namer(self) -> Namer:
        """Names fields as this definition's source does."""
        return Namer(origin=self.origin, typed=self.names)


# -- values written the human way ------------------------------------------------------------


def parse_instant(value: str | datetime) -> int:
    """Turn an ISO 8601 time with a zone (``2026-11-01T00:00:00Z``) into epoch milliseconds.

    Raises:
        ValueError: not ISO 8601, no time zone, or not after 1970.
    """
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"cannot read {value!r} as an ISO 8601 time; write e.g. 2026-11-01T00:00:00Z"
            ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"{moment.isoformat()!r} has no time zone; add one, e.g. "
            f"{moment.isoformat()}Z or {moment.isoformat()}+02:00"
        )
    millis = (moment - _EPOCH) // timedelta(milliseconds=1)
    if millis <= 0:
        raise ValueError(f"{moment.isoformat()} is not after 1970-01-01T00:00:00Z")
    return millis


def parse_tag(text: str) -> tuple[str, str]:
    """Split ``KEY=VALUE`` (``team=search``) at its first ``=``; neither side may be empty.

    Raises:
        ValueError: no ``=``, or an empty key or value.
    """
    key, equals, value = text.partition("=")
    if not equals:
        raise ValueError(f"{text!r} is not KEY=VALUE; write e.g. team=search")
    if not key or not value:
        side = "key" if not key else "value"
        raise ValueError(f"{text!r} has an empty {side}; write KEY=VALUE, e.g. team=search")
    return key, value


def parse_trace_ids(text: str) -> tuple[str, ...]:
    """Split MLflow's comma-separated spelling (``tr-abc,tr-def``); spaces around IDs dropped.

    Raises:
        ValueError: an item is empty (``a,,b``, a leading or trailing comma, nothing at all).
    """
    ids = tuple(item.strip() for item in text.split(","))
    if not all(ids):
        raise ValueError(
            f"empty trace ID in {text!r}; write one or more IDs separated by commas, "
            "e.g. tr-abc,tr-def"
        )
    return ids


def read_trace_ids(path: str, flag: str, stdin: TextIO | None = None) -> tuple[str, ...]:
    """Read trace IDs, one per line (blank lines and ``#`` comments skipped); ``-`` is stdin.

    Raises:
        BadInputError: unreadable, not text, or holds no ID.
    """
    where = "stdin" if path == "-" else repr(path)
    try:
        if path == "-":
            text = (stdin if stdin is not None else sys.stdin).read()
        else:
            text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise BadInputError(f"{flag}: cannot read {where}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise BadInputError(f"{flag}: {where} is not UTF-8 text") from None
    ids = tuple(
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    )
    if not ids:
        raise BadInputError(f"{flag}: no trace IDs in {where} (one ID per line)")
    return ids


# -- definitions -> specs --------------------------------------------------------------------


def build_specs(definitions: Iterable[JobDefinition]) -> list[tuple[DeleteSpec, JobDefinition]]:
    """One DeleteSpec per experiment of each definition, labelled uniquely, with its source.

    Raises:
        BadInputError: a definition has no experiment, or breaks a rule of DeleteSpec.
    """
    specs: list[tuple[DeleteSpec, JobDefinition]] = []
    labels: set[str] = set()
    for definition in definitions:
        namer = definition.namer
        where = namer.where
        experiments = [("experiment_id", value) for value in definition.experiment_ids]
        experiments += [("experiment_name", value) for value in definition.experiment_names]
        _check_selection(definition, bool(experiments))
        if definition.selecting:
            specs.append((_selector_spec(definition), definition))
            continue
        if not experiments:
            raise BadInputError(
                f"{where}{namer('experiment_id')} / {namer('experiment_name')}: "
                f"give at least one experiment, or a selector ({_selector_names(namer)})"
            )
        for value in definition.experiment_ids:
            check_experiment_id_text(value, namer)
        for key, experiment in dict.fromkeys(experiments):
            label = f"{definition.name}/{experiment}" if definition.name else experiment
            if label in labels:
                raise BadInputError(f"{where}job {label!r} is defined twice")
            labels.add(label)
            try:
                spec = DeleteSpec.model_validate(
                    {key: experiment, **definition.fields, "label": label}
                )
            except SpecError as error:
                raise BadInputError(namer.validation(error)) from None
            specs.append((spec, definition))
    return specs


def _selector_names(namer: Namer) -> str:
    return ", ".join(
        namer(SELECTOR_FIELDS[key]) for key in ("all_experiments", "name_like", "tags")
    )


def _check_selection(definition: JobDefinition, named: bool) -> None:
    """A job names its experiments or selects them, not both; exclusions need a selector.

    Raises:
        BadInputError: either rule is broken (the flags or keys given are named).
    """
    namer = definition.namer
    selecting = [namer(SELECTOR_FIELDS[key]) for key in definition.selecting]
    if named and selecting:
        given = [
            namer(key)
            for key, values in (
                ("experiment_id", definition.experiment_ids),
                ("experiment_name", definition.experiment_names),
            )
            if values
        ]
        raise BadInputError(
            f"{namer.where}{' and '.join(given)} and {' and '.join(selecting)}: a job names "
            "its experiments or selects them, not both; make them two jobs"
        )
    if definition.excluding and not selecting:
        excluding = " and ".join(namer(SELECTOR_FIELDS[key]) for key in definition.excluding)
        raise BadInputError(
            f"{namer.where}{excluding}: exclusions narrow a selector; add "
            f"{_selector_names(namer)}, or drop the exclusion (a job that names its "
            "experiments deletes in exactly those)"
        )


def _selector_spec(definition: JobDefinition) -> DeleteSpec:
    """The one spec of a job that selects its experiments (expanded once per run by the
    library: one job per experiment, labelled ``<name>/<experiment name>``).

    Raises:
        BadInputError: the selector or the spec breaks a rule of the library.
    """
    try:
        return DeleteSpec.model_validate(
            {
                "experiments": dict(definition.selector),
                **definition.fields,
                "label": definition.name,
            }
        )
    except SpecError as error:
        raise BadInputError(definition.namer.validation(error)) from None


def check_cutoffs(specs: Iterable[tuple[DeleteSpec, JobDefinition]], now_ms: int) -> None:
    """Run the library's time rules (future cutoff, minimum retention) before any HTTP call.

    Raises:
        BadInputError: a cutoff is in the future or newer than ``min_retention`` allows.
    """
    for spec, definition in specs:
        try:
            spec.pin_cutoff(now_millis=now_ms)
        except GuardrailError as error:
            raise BadInputError(describe_guardrail(error, definition)) from None


def describe_guardrail(error: GuardrailError, definition: JobDefinition | None) -> str:
    """A guardrail refusal in the user's words."""
    namer = definition.namer if definition is not None else Namer()
    return namer.message(error)


def check_experiment_id_text(value: str, namer: Namer) -> None:
    """Refuse an ``--experiment-id`` that is not MLflow's form (ASCII digits).

    Raises:
        BadInputError: it is not (the flag or key is named).
    """
    if value.strip() == value != "" and not re.fullmatch(r"[0-9]+", value):
        raise BadInputError(
            f"{namer.where}{namer('experiment_id')}: {value!r} is not an experiment ID "
            f"(MLflow's are whole numbers; for a name use {namer('experiment_name')})"
        )


def build_engine_config(
    options: Mapping[str, Any], names: Mapping[str, str], client: ClientConfig
) -> EngineConfig:
    """EngineConfig from options named as flags (``rate``, ``concurrency``, ...); ``names``
    says how the user wrote the ones they set (a flag, or a policy file's key).

    Batch bounds the user did not set follow the ones they did (``EngineConfig``'s rule:
    ``--max-batch-size 50`` alone lowers the minimum and the initial size to 50).

    Raises:
        BadInputError: a value breaks a rule of EngineConfig (the flag or key is named).
    """
    values: dict[str, Any] = {
        ENGINE_OPTIONS[key]: value for key, value in options.items() if value is not None
    }
    typed = {ENGINE_OPTIONS[key]: name for key, name in names.items()}
    try:
        return EngineConfig(client=client, **values)
    except SpecError as error:
        raise BadInputError(Namer(typed=typed).validation(error)) from None


@dataclass(frozen=True)
class Invocation:
    """A command line checked and turned into the library's inputs (no HTTP yet)."""

    argv: tuple[str, ...]
    args: argparse.Namespace
    jobs: tuple[tuple[DeleteSpec, JobDefinition], ...]
    config: EngineConfig
    secrets: tuple[str, ...]
    plan_file: Any = None  # a PlanFile for `apply` (typed loosely: plan_file imports inputs)
    server: ServerSource | None = None  # where the tracking URI came from

    @property
    def execute(self) -> bool:
        """Whether this run deletes (``apply`` always does: its plan was the dry run)."""
        return self.plan_file is not None or bool(self.args.execute)

    def server_line(self) -> str:
        """``Server: URL (from ...)``: which server this command talks to, and why (URL
        credentials hidden; the caller's redactor hides the rest of its secrets)."""
        client = self.config.client
        return server_line(client.tracking_uri if client else "?", self.server)

    def server_json(self) -> dict[str, Any] | None:
        """The ``server`` object of ``--json`` (None without a client config)."""
        client = self.config.client
        return None if client is None else server_json(client.tracking_uri, self.server)

    def command(self, *, execute: bool | None = None) -> str:
        """The command line, quoted as a person types it (``--filter "status = 'ERROR'"``;
        the shell parses it back to the same words), URL credentials redacted.

        Args:
            execute: True adds ``--execute`` (and drops ``--plan-out``, which only a dry run
                writes), False removes it, None keeps it as typed.
        """
        words: list[str] = []
        redact_next = skip_next = False
        for word in self.argv:
            if skip_next:
                skip_next = False
                continue
            if execute and (word == "--plan-out" or word.startswith("--plan-out=")):
                skip_next = word == "--plan-out"
                continue
            if redact_next:
                word, redact_next = redact_url(word), False
            elif word == "--tracking-uri":
                redact_next = True
            elif word.startswith("--tracking-uri="):
                word = "--tracking-uri=" + redact_url(word.partition("=")[2])
            if word != "--execute" or execute is None:
                words.append(word)
        if execute:
            words.append("--execute")
        return shell_join([PROG, *words])
