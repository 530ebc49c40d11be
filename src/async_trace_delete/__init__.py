"""Delete MLflow traces in bulk, fast and safely, from async code.

Deletion is irreversible: dry-run first. See the README for the safety model.
"""

from importlib.metadata import PackageNotFoundError, version

from ._batching import BatchSizer, Outcome, SizerSettings
from ._client import Experiment, TracePage, TracesClient, TraceSummary
from ._concurrency import ConcurrencyController, FixedLimit, LimitSettings
from ._config import ClientConfig, EngineConfig
from ._controls import ConcurrencyLimit, Sizer
from ._engine import Engine, JobHandle, JobStatus
from ._events import (
    BatchDeleted,
    BatchOutcomeUnknown,
    BatchSizeChanged,
    ConcurrencyChanged,
    Event,
    FoldersSwept,
    ForegroundChanged,
    Hook,
    JobFinished,
    JobStarted,
    LoggingHook,
    RetryScheduled,
    Throttled,
)
from ._exceptions import (
    ArtifactsUnavailableError,
    AuthenticationError,
    BatchTooLargeError,
    ConflictingJobsError,
    ConnectError,
    EngineClosedError,
    GuardrailError,
    InvalidParameterError,
    InvalidResponseError,
    MlflowApiError,
    NoProgressError,
    NotFoundError,
    NotMlflowServerError,
    OutOfSelectionError,
    PermissionDeniedError,
    RedirectError,
    RequestTimeoutError,
    RetryBudgetExhaustedError,
    RuleError,
    ServerError,
    ServerUnavailableError,
    SpecError,
    ThrottledError,
    TraceDeleteError,
    TransportError,
    UsageError,
)
from ._messages import FieldMessage
from ._planning import JobPlan, PlanReport, SampleTrace
from ._reports import ArtifactReport, BatchRecord, JobReport, JobState, RunReport
from ._retry import RetryBudget, RetryPolicy, compute_backoff
from ._selection import ExperimentSelector, Selection, SkippedExperiment
from ._specs import DeleteSpec, ResolvedSpec
from ._sweep import SweepExperiment, SweepReport

try:
    __version__ = version("async-trace-delete")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "ArtifactReport",
    "ArtifactsUnavailableError",
    "AuthenticationError",
    "BatchDeleted",
    "BatchOutcomeUnknown",
    "BatchRecord",
    "BatchSizeChanged",
    "BatchSizer",
    "BatchTooLargeError",
    "ClientConfig",
    "ConcurrencyChanged",
    "ConcurrencyController",
    "ConcurrencyLimit",
    "ConflictingJobsError",
    "ConnectError",
    "DeleteSpec",
    "Engine",
    "EngineClosedError",
    "EngineConfig",
    "Event",
    "Experiment",
    "ExperimentSelector",
    "FieldMessage",
    "FixedLimit",
    "FoldersSwept",
    "ForegroundChanged",
    "GuardrailError",
    "Hook",
    "InvalidParameterError",
    "InvalidResponseError",
    "JobFinished",
    "JobHandle",
    "JobPlan",
    "JobReport",
    "JobStarted",
    "JobState",
    "JobStatus",
    "LimitSettings",
    "LoggingHook",
    "MlflowApiError",
    "NoProgressError",
    "NotFoundError",
    "NotMlflowServerError",
    "OutOfSelectionError",
    "Outcome",
    "PermissionDeniedError",
    "PlanReport",
    "RedirectError",
    "RequestTimeoutError",
    "ResolvedSpec",
    "RetryBudget",
    "RetryBudgetExhaustedError",
    "RetryPolicy",
    "RetryScheduled",
    "RuleError",
    "RunReport",
    "SampleTrace",
    "Selection",
    "ServerError",
    "ServerUnavailableError",
    "Sizer",
    "SizerSettings",
    "SkippedExperiment",
    "SpecError",
    "SweepExperiment",
    "SweepReport",
    "Throttled",
    "ThrottledError",
    "TraceDeleteError",
    "TracePage",
    "TraceSummary",
    "TracesClient",
    "TransportError",
    "UsageError",
    "__version__",
    "compute_backoff",
]
