"""Delete MLflow traces in bulk, fast and safely, from async code.

Deletion is irreversible: dry-run first. See the README for the safety model.
"""

from importlib.metadata import PackageNotFoundError, version

from ._client import Experiment, TracePage, TracesClient, TraceSummary
from ._config import ClientConfig
from ._exceptions import (
    AuthenticationError,
    BatchTooLargeError,
    ConnectError,
    EngineClosedError,
    GuardrailError,
    InvalidParameterError,
    InvalidResponseError,
    MlflowApiError,
    NotFoundError,
    PermissionDeniedError,
    RequestTimeoutError,
    RetryBudgetExhaustedError,
    ServerError,
    ServerUnavailableError,
    ThrottledError,
    TraceDeleteError,
    TransportError,
    UsageError,
)
from ._specs import DeleteSpec, ResolvedSpec

try:
    __version__ = version("async-trace-delete")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "AuthenticationError",
    "BatchTooLargeError",
    "ClientConfig",
    "ConnectError",
    "DeleteSpec",
    "EngineClosedError",
    "Experiment",
    "GuardrailError",
    "InvalidParameterError",
    "InvalidResponseError",
    "MlflowApiError",
    "NotFoundError",
    "PermissionDeniedError",
    "RequestTimeoutError",
    "ResolvedSpec",
    "RetryBudgetExhaustedError",
    "ServerError",
    "ServerUnavailableError",
    "ThrottledError",
    "TraceDeleteError",
    "TracePage",
    "TraceSummary",
    "TracesClient",
    "TransportError",
    "UsageError",
    "__version__",
]
