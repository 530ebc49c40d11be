"""The one table of names: each library field, as a flag and as a policy key.

Every message the CLI prints about a field names it the way the user wrote it: the flag on
the command line (``--older-than``), the key in a policy file (``jobs[2]: older_than``), or
the flag or key the user actually typed when two set the same field (``--before`` and
``--max-timestamp-millis`` both set ``max_timestamp_millis``). Library errors that name
fields carry a :class:`~.._exceptions.FieldMessage`; :class:`Namer` renders it, so no
message text is ever rewritten.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .._exceptions import SpecError, TraceDeleteError

__all__ = ["ENGINE_OPTIONS", "FIELDS", "SELECTOR_FIELDS", "FieldName", "Namer"]


@dataclass(frozen=True)
class FieldName:
    """One library field and its names in the CLI.

    Attributes:
        field: The field of ``DeleteSpec``, ``EngineConfig`` or ``ClientConfig``.
        flag: Its flag (or the environment variable that sets it).
        key: Its policy-file key.
        engine: True for an ``EngineConfig`` setting (flag and ``[engine]`` key).
    """

    field: str
    flag: str
    key: str
    engine: bool = False


FIELDS: tuple[FieldName, ...] = (
    FieldName("experiment_id", "--experiment-id", "experiment_ids"),
    FieldName("experiment_name", "--experiment-name", "experiment_names"),
    FieldName("all_experiments", "--all-experiments", "all_experiments"),
    FieldName("experiment_name_like", "--experiment-name-like", "experiment_name_like"),
    FieldName("experiment_tags", "--experiment-tag", "experiment_tags"),
    FieldName("exclude_experiment_names", "--exclude-experiment-name", "exclude_experiment_names"),
    FieldName("exclude_experiment_ids", "--exclude-experiment-id", "exclude_experiment_ids"),
    FieldName(
        "experiments",
        "--all-experiments / --experiment-name-like / --experiment-tag",
        "all_experiments / experiment_name_like / experiment_tags",
    ),
    FieldName("name_like", "--experiment-name-like", "experiment_name_like"),  # the library's
    FieldName("tags", "--experiment-tag", "experiment_tags"),  # ExperimentSelector fields
    FieldName("retention_tag", "--retention-tag", "retention_tag"),
    FieldName("max_timestamp_millis", "--max-timestamp-millis", "max_timestamp_millis"),
    FieldName("older_than", "--older-than", "older_than"),
    FieldName("trace_ids", "--trace-ids / --trace-ids-file", "trace_ids_file"),
    FieldName("filter_string", "--filter", "filter"),
    FieldName("max_traces", "--max-traces", "max_traces"),
    FieldName("expect_at_most", "--expect-at-most", "expect_at_most"),
    FieldName("min_retention", "--min-retention", "min_retention"),
    FieldName("allow_match_all", "--allow-match-all", "allow_match_all"),
    FieldName("force", "--force", "force"),
    FieldName("with_artifacts", "--with-artifacts", "with_artifacts"),
    FieldName("rate_limit", "--rate", "rate", engine=True),
    FieldName("read_rate_limit", "--read-rate", "read_rate", engine=True),
    FieldName("artifact_rate_limit", "--artifact-rate", "artifact_rate", engine=True),
    FieldName("foreground_budget", "--foreground-budget", "foreground_budget", engine=True),
    FieldName("throttle_url", "--throttle-url", "throttle_url", engine=True),
    FieldName("max_concurrency", "--concurrency", "concurrency", engine=True),
    FieldName("target_latency", "--target-latency", "target_latency", engine=True),
    FieldName("min_batch_size", "--min-batch-size", "min_batch_size", engine=True),
    FieldName("max_batch_size", "--max-batch-size", "max_batch_size", engine=True),
    FieldName("initial_batch_size", "--initial-batch-size", "initial_batch_size", engine=True),
    FieldName("max_id_chunk", "--max-id-chunk", "max_id_chunk", engine=True),
    FieldName("sleep_coefficient", "--sleep-coefficient", "sleep_coefficient", engine=True),
    FieldName("min_sleep", "--min-sleep", "min_sleep", engine=True),
    FieldName("request_timeout", "--request-timeout", "request_timeout", engine=True),
    FieldName("tracking_uri", "--tracking-uri", "tracking_uri"),
    FieldName("username", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_USERNAME"),
    FieldName("password", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_PASSWORD"),
    FieldName("token", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_TOKEN"),
    FieldName("timeout", "MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_TIMEOUT"),
)

_BY_FIELD: Mapping[str, FieldName] = {name.field: name for name in FIELDS}

ENGINE_OPTIONS: Mapping[str, str] = {name.key: name.field for name in FIELDS if name.engine}
"""Engine option (argparse ``dest`` and ``[engine]`` key) -> ``EngineConfig`` field."""

SELECTOR_FIELDS: Mapping[str, str] = {
    "all_experiments": "all_experiments",
    "name_like": "experiment_name_like",
    "tags": "experiment_tags",
    "exclude_names": "exclude_experiment_names",
    "exclude_ids": "exclude_experiment_ids",
}
"""``ExperimentSelector`` field (``DeleteSpec.experiments.<field>``) -> its row in
:data:`FIELDS` (the names the library's messages use for them)."""


@dataclass(frozen=True)
class Namer:
    """Names fields as one source of input does: the command line, or one policy job.

    Args:
        origin: Where the input was written (``"jobs[2] in policy.toml"``); ``""`` for the
            command line.
        typed: Field -> what the user actually typed for it, where that differs from the
            table (``--before`` for ``max_timestamp_millis``).
        section: For policy keys in a section (``"[engine] "``), put before the key.
    """

    origin: str = ""
    typed: Mapping[str, str] = field(default_factory=dict)
    section: str = ""

    @property
    def where(self) -> str:
        """The origin as a message prefix (``"jobs[2] in p.toml: "``, or ``""``)."""
        return f"{self.origin}: " if self.origin else ""

    def __call__(self, field_name: str, verb: str | None = None) -> str:
        """The field's name; with ``verb``, the words that turn the switch on."""
        typed = self.typed.get(field_name)
        if typed is None:
            known = _BY_FIELD.get(field_name)
            if known is None:
                typed = field_name
            elif self.origin:
                typed = self.section + known.key
            else:
                typed = known.flag
        if verb is None:
            return typed
        return f"pass {typed}" if typed.startswith("-") else f"set {typed} = true"

    def qualified(self, field_name: str) -> str:
        """The field's name with the origin in front (``"jobs[0] in p.toml: filter"``)."""
        return self.where + self(field_name)

    def message(self, error: TraceDeleteError) -> str:
        """A library error in these names, with the origin in front."""
        return self.where + error.render(self)

    def validation(self, error: SpecError, *, show_input: bool = True) -> str:
        """A model's refusal (pydantic's problems) in these names: the first problem, one line
        (with the value given, unless ``show_input`` is false)."""
        first = error.errors(include_url=False)[0]
        cause = first.get("ctx", {}).get("error")
        if isinstance(cause, TraceDeleteError):
            message = cause.render(self)
        else:
            message = str(first["msg"]).removeprefix("Value error, ")
        location = first["loc"]
        field_name = str(location[0]) if location else ""
        if field_name == "experiments":  # the selector, a model inside DeleteSpec
            if len(location) > 1 and str(location[1]) in SELECTOR_FIELDS:
                field_name = SELECTOR_FIELDS[str(location[1])]
            elif isinstance(cause, TraceDeleteError):
                return self.where + message  # a rule between its fields: it names them
        if not field_name:
            return self.where + message
        given = first.get("input")
        shown = f" (got {given!r})" if show_input and isinstance(given, str | int | float) else ""
        return f"{self.where}{self(field_name)}: {message}{shown}"
