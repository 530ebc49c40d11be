"""Policy files: many cleanup jobs in one TOML file, for ``async-trace-delete run``.

Each ``[[jobs]]`` table is one job definition, exactly as the ``delete`` flags would give it
(keys are the flag names with underscores); nothing here is a rule of its own.

Format (every key optional unless noted)::

    tracking_uri = "http://127.0.0.1:5000"   # the --tracking-uri flag wins over it

    [engine]                # same names as the flags: rate, concurrency, target_latency, ...
    rate = 10

    [defaults]              # any job key, applied to every job that does not set it
    min_retention = "7d"

    [[jobs]]                # one or more
    name = "chat-prod"      # label prefix in reports
    experiment_ids = ["12"]           # and/or
    experiment_names = ["chat-prod"]  # (at least one experiment), or instead a selector:
    # all_experiments = true           # every active experiment, or
    # experiment_name_like = "chat-%"  # names matching a LIKE pattern, and/or
    # experiment_tags = {team = "search"}        # tags (all must match);
    # exclude_experiment_names = ["chat-golden"] # never these (with a selector only)
    # exclude_experiment_ids = ["7"]
    # retention_tag = "retention"   # an experiment's tag holding a duration (30d) is its
    #                               # own older_than; the job's cutoff is for the others
    older_than = "30d"      # s, m (minutes), h, d, w: lowercase, no months or years;
                            # or before = 2026-11-01T00:00:00Z, or max_timestamp_millis,
                            # or trace_ids_file = "ids.txt" (relative to the policy file)
    filter = "status = 'ERROR'"
    max_traces = 100000
    expect_at_most = 500000
    force = false
    allow_match_all = false
    with_artifacts = false  # also remove each deleted trace's artifact folder
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

from .._checks import is_int
from .inputs import (
    BadInputError,
    JobDefinition,
    parse_duration,
    parse_instant,
    read_trace_ids,
)
from .names import ENGINE_OPTIONS

__all__ = ["Policy", "load_policy"]

_JOB_KEYS = {
    "name",
    "experiment_ids",
    "experiment_names",
    "older_than",
    "before",
    "max_timestamp_millis",
    "trace_ids_file",
    "filter",
    "max_traces",
    "expect_at_most",
    "min_retention",
    "force",
    "allow_match_all",
    "with_artifacts",
    "all_experiments",
    "experiment_name_like",
    "experiment_tags",
    "exclude_experiment_names",
    "exclude_experiment_ids",
    "retention_tag",
}
_TOP_KEYS = {"tracking_uri", "engine", "defaults", "jobs"}
_T = TypeVar("_T")


@dataclass(frozen=True)
class Policy:
    """A parsed policy file."""

    path: Path
    tracking_uri: str | None
    engine: Mapping[str, Any]
    jobs: tuple[JobDefinition, ...]
    engine_names: Mapping[str, str] = field(default_factory=dict)


# -- policy files ---------------------------------------------------------------------------


def load_policy(path: str) -> Policy:
    """Read and check a TOML policy file (no HTTP; trace ID files are read).

    Raises:
        BadInputError: unreadable, not TOML, an unknown key, or a value of the wrong form.
    """
    policy_path = Path(path)
    try:
        data = tomllib.loads(policy_path.read_text(encoding="utf-8"))
    except OSError as error:
        raise BadInputError(f"POLICY: cannot read {path!r}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise BadInputError(f"POLICY: {path!r} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise BadInputError(f"POLICY: {path!r} is not valid TOML: {error}") from None
    name = policy_path.name
    _no_unknown(data, _TOP_KEYS, name)
    tracking_uri = data.get("tracking_uri")
    if tracking_uri is not None and not isinstance(tracking_uri, str):
        raise BadInputError(f"{name}: tracking_uri: must be a string")
    engine = _table(data, "engine", name)
    _no_unknown(engine, set(ENGINE_OPTIONS), f"{name}: [engine]")
    defaults = _table(data, "defaults", name)
    _no_unknown(defaults, _JOB_KEYS - {"name"}, f"{name}: [defaults]")
    jobs = data.get("jobs")
    if not isinstance(jobs, list) or not jobs or not all(isinstance(j, dict) for j in jobs):
        raise BadInputError(f"{name}: needs at least one [[jobs]] table")
    definitions = tuple(
        _job_definition({**defaults, **job}, f"{name}: jobs[{index}]", policy_path.parent)
        for index, job in enumerate(jobs, start=1)
    )
    return Policy(
        path=policy_path,
        tracking_uri=tracking_uri,
        engine=engine,
        jobs=definitions,
        engine_names={key: f"{name}: [engine] {key}" for key in ENGINE_OPTIONS},
    )


def _table(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise BadInputError(f"{where}: [{key}] must be a table")
    return value


def _no_unknown(table: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise BadInputError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )


def _job_definition(job: Mapping[str, Any], origin: str, base: Path) -> JobDefinition:
    _no_unknown(job, _JOB_KEYS, origin)
    fields: dict[str, Any] = {}
    names: dict[str, str] = {}

    for key in ("older_than", "min_retention"):
        if key in job:
            fields[key] = _parsed(job, key, origin, lambda value: parse_duration(_text(value)))
    if "before" in job:
        fields["max_timestamp_millis"] = _parsed(job, "before", origin, _policy_instant)
        names["max_timestamp_millis"] = "before"
    if "max_timestamp_millis" in job and "before" in job:
        raise BadInputError(f"{origin}: before: give before or max_timestamp_millis, not both")
    for key, target in (
        ("max_timestamp_millis", "max_timestamp_millis"),
        ("filter", "filter_string"),
        ("max_traces", "max_traces"),
        ("expect_at_most", "expect_at_most"),
        ("force", "force"),
        ("allow_match_all", "allow_match_all"),
        ("with_artifacts", "with_artifacts"),
        ("retention_tag", "retention_tag"),
    ):
        if key in job:
            fields[target] = job[key]
    if "trace_ids_file" in job:
        ids_path = Path(_parsed(job, "trace_ids_file", origin, _text)).expanduser()
        ids_path = ids_path if ids_path.is_absolute() else base / ids_path
        fields["trace_ids"] = read_trace_ids(str(ids_path), f"{origin}: trace_ids_file")
    job_name = job.get("name")
    if job_name is not None and (not isinstance(job_name, str) or not job_name.strip()):
        raise BadInputError(f"{origin}: name: must be a non-empty string")
    return JobDefinition(
        origin=origin,
        name=job_name,
        experiment_ids=_experiments(job, "experiment_ids", origin, allow_int=True),
        experiment_names=_experiments(job, "experiment_names", origin, allow_int=False),
        fields=fields,
        names=names,
        selector=_selector(job, origin),
    )


def _selector(job: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """The ExperimentSelector fields a job's keys give (empty: none given); values of the
    wrong type go through for the library to name."""
    selector: dict[str, Any] = {}
    if "all_experiments" in job:
        selector["all_experiments"] = job["all_experiments"]
    if "experiment_name_like" in job:
        selector["name_like"] = job["experiment_name_like"]
    if "experiment_tags" in job:
        selector["tags"] = _tags(job["experiment_tags"], f"{origin}: experiment_tags")
    for key, target in (
        ("exclude_experiment_names", "exclude_names"),
        ("exclude_experiment_ids", "exclude_ids"),
    ):
        if key in job:
            selector[target] = _experiments(job, key, origin, allow_int=key.endswith("ids"))
    return selector


def _tags(value: Any, where: str) -> dict[str, str]:
    """``experiment_tags = {team = "search"}``: a table of non-empty strings."""
    if not isinstance(value, dict):
        raise BadInputError(f'{where}: must be a table, e.g. {{team = "search"}}')
    for key, text in value.items():
        if not isinstance(text, str) or not text:
            raise BadInputError(f"{where}: {key}: the value must be a non-empty string")
    return dict(value)


def _parsed(job: Mapping[str, Any], key: str, origin: str, parse: Callable[[Any], _T]) -> _T:
    try:
        return parse(job[key])
    except ValueError as error:
        raise BadInputError(f"{origin}: {key}: {error}") from None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {value!r}")  # noqa: TRY004 - reported as input
    return value


def _policy_instant(value: Any) -> int:
    if isinstance(value, date) and not isinstance(value, datetime):
        raise ValueError(f"{value.isoformat()} is a date; give a time with a zone")  # noqa: TRY004
    if isinstance(value, str | datetime):
        return parse_instant(value)
    raise ValueError(f"must be an ISO 8601 time with a zone, got {value!r}")


def _experiments(
    job: Mapping[str, Any], key: str, origin: str, *, allow_int: bool
) -> tuple[str, ...]:
    values = job.get(key, [])
    if isinstance(values, str) or is_int(values):
        values = [values]
    if not isinstance(values, list):
        raise BadInputError(f"{origin}: {key}: must be a list")
    result = []
    for value in values:
        if is_int(value) and allow_int:
            value = str(value)
        if not isinstance(value, str):
            raise BadInputError(f"{origin}: {key}: {value!r} is not a string")
        result.append(value)
    return tuple(result)
