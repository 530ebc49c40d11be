"""The one error hierarchy of async-trace-delete.

Every failure the library raises is a :class:`TraceDeleteError`. Failures talking to the
MLflow server are :class:`MlflowApiError` and carry their context: HTTP status, MLflow
``error_code``, the experiment and the batch size of the call that failed. No ``httpx``
exception ever escapes the client.

::

    TraceDeleteError
    ├── UsageError (also ValueError)       bad arguments, caught before any HTTP call
    │   ├── RuleError                      a rule between fields (its message names them)
    │   └── SpecError                      an invalid DeleteSpec, EngineConfig, ClientConfig...
    │                                      (the field named; pydantic's .errors() kept)
    ├── EngineClosedError                  submit() on an engine that is not open
    ├── GuardrailError                     a safety guardrail refused (or stopped) the job
    ├── ConflictingJobsError (UsageError)  two jobs of one run on the same experiment
    ├── NoProgressError                    transient failures, no progress for progress_timeout
    ├── RetryBudgetExhaustedError          (no longer raised: a spent budget throttles)
    └── MlflowApiError                     anything the server (or the road to it) said
        ├── InvalidParameterError          400 INVALID_PARAMETER_VALUE (message kept)
        ├── NotFoundError                  404 / RESOURCE_DOES_NOT_EXIST
        ├── AuthenticationError            401 (basic-auth answers in plain text)
        ├── PermissionDeniedError          403 (plain text "Permission denied")
        ├── BatchTooLargeError             503 "too many SQL variables": shrink, don't retry
        ├── ThrottledError                 429, with Retry-After parsed
        ├── ServerUnavailableError         503 (e.g. "database is locked"), Retry-After parsed
        ├── ServerError                    other 5xx
        ├── ArtifactsUnavailableError      503 "--no-serve-artifacts": artifacts left, not retried
        ├── NotMlflowServerError           the answer is not MLflow's (an HTML 404, a login
        │   │                              page, a proxy's page): fail, never "not found"
        │   └── RedirectError              3xx (an SSO login page in front of MLflow): fail
        ├── OutOfSelectionError            search answered a trace outside the job: fail
        ├── InvalidResponseError           a 2xx whose body is not the JSON we expect
        └── TransportError                 no HTTP answer at all
            ├── ConnectError               never reached the server: nothing was done
            └── RequestTimeoutError        sent, no answer in time: outcome unknown

Each class carries its verdict as class attributes, read by the engine instead of a ladder
of ``isinstance`` checks: ``retry_decision`` (retry, shrink the batch, or fail at once),
``outcome`` (what the failure says about the server's load, for the controllers; ``None``
when it says nothing) and ``outcome_unknown_default``. The status-to-class table is
:func:`._error_table.error_for`.

``outcome_unknown`` is true when the server may have carried the request out although we
never heard so: a read timeout, a connection dropped after sending, an unreadable 2xx, and
every 5xx that is not MLflow's own JSON error (a 502/504 from a gateway, Envoy's plain-text
503 "upstream connect error", an nginx HTML 500, Cloudflare's 520-524, a 599, an empty body):
something in front of MLflow answered, and it may have lost the server's answer after the
work was done. MLflow's own JSON errors (its handler caught the failure, the transaction
rolled back) stay certain. A delete that ends in doubt is reported as *ambiguous*, never
counted as done or not done, and counts against every cap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from ._messages import FieldMessage
from ._outcomes import Outcome, RetryDecision

__all__ = [
    "ArtifactsUnavailableError",
    "AuthenticationError",
    "BatchTooLargeError",
    "ConflictingJobsError",
    "ConnectError",
    "EngineClosedError",
    "GuardrailError",
    "InvalidParameterError",
    "InvalidResponseError",
    "MlflowApiError",
    "NoProgressError",
    "NotFoundError",
    "NotMlflowServerError",
    "OutOfSelectionError",
    "PermissionDeniedError",
    "RedirectError",
    "RequestTimeoutError",
    "RetryBudgetExhaustedError",
    "RuleError",
    "ServerError",
    "ServerUnavailableError",
    "SpecError",
    "ThrottledError",
    "TraceDeleteError",
    "TransportError",
    "UsageError",
]


class TraceDeleteError(Exception):
    """Base class of every error async-trace-delete raises.

    Args:
        message: What went wrong; a :class:`FieldMessage` when it names fields (kept as
            :attr:`message_fields`, so a front end can re-render it in its own names).
    """

    retry_decision: ClassVar[RetryDecision] = RetryDecision.FAIL
    """What the engine does after this failure: by default, give up."""
    outcome: ClassVar[Outcome | None] = None
    """What this failure tells the controllers about the server's load (``None``: nothing)."""

    def __init__(self, message: object = "", *args: object) -> None:
        self.message_fields = message if isinstance(message, FieldMessage) else None
        super().__init__(str(message) if self.message_fields is not None else message, *args)

    def render(self, name: Callable[[str, str | None], str]) -> str:
        """The message with its fields named by ``name`` (as ``str()`` when it names none)."""
        if self.message_fields is None:
            return str(self)
        return self.message_fields.render(name)


class UsageError(TraceDeleteError, ValueError):
    """Arguments that break a rule; raised before any HTTP call is made."""


class EngineClosedError(TraceDeleteError, RuntimeError):
    """The engine is not open (never entered, or already closed)."""


class GuardrailError(TraceDeleteError):
    """A safety guardrail refused a job before anything was deleted."""


class RuleError(UsageError):
    """A spec or setting breaks one of the rules between its fields (pydantic reports it as
    a validation error whose context holds this error, with its :class:`FieldMessage`)."""


class SpecError(UsageError):
    """An invalid :class:`~._specs.DeleteSpec`, :class:`~._config.EngineConfig`,
    :class:`~._config.ClientConfig` or other public model: pydantic refused its input.

    ``except TraceDeleteError`` (or ``except ValueError``) catches it like every other
    refusal. Its message names the field (and, for a rule between fields, every field of the
    rule, as a :class:`FieldMessage`); pydantic's details are kept: :meth:`errors` and
    :attr:`validation_error`, which is also its ``__cause__``. A model that hides its input
    in errors (``hide_input_in_errors``: a URI, a credential) never shows it here either.

    Attributes:
        model: The name of the model that refused (``"DeleteSpec"``).
        validation_error: pydantic's ``ValidationError``.
    """

    def __init__(
        self,
        message: object,
        *,
        model: str,
        validation_error: Exception,
        hide_input: bool = False,
    ) -> None:
        super().__init__(message)
        self.model = model
        self.validation_error = validation_error
        self._hide_input = hide_input

    def errors(self, **options: Any) -> list[Any]:
        """pydantic's list of problems (``ValidationError.errors(**options)``); for a model
        that hides its input (a URI, a credential) without the input unless asked for with
        ``include_input=True``."""
        if self._hide_input:
            options.setdefault("include_input", False)
        errors: list[Any] = self.validation_error.errors(**options)  # type: ignore[attr-defined]
        return errors


class ConflictingJobsError(UsageError):
    """Two jobs of one run select the same experiment with different specs.

    After names are resolved, a run holds at most one job per experiment: two caps on one
    experiment would add up, and two cutoff jobs would race for the same oldest rows.
    """


class NoProgressError(TraceDeleteError):
    """A job kept meeting transient failures and made no progress for ``progress_timeout``.

    Attributes:
        last_error: The failure that ended the job.
        seconds: How long the job went without a successful call.
    """

    def __init__(
        self, message: str, *, last_error: BaseException | None = None, seconds: float = 0.0
    ) -> None:
        super().__init__(message)
        self.last_error = last_error
        self.seconds = seconds


class RetryBudgetExhaustedError(TraceDeleteError):
    """Kept for compatibility; no longer raised.

    A spent run-wide retry budget now slows every job down (shared rate, pauses) instead
    of failing the run: backed-off, rate-limited retries are not a storm. A job fails on a
    permanent error or on :class:`NoProgressError`.
    """

    def __init__(self, message: str, *, last_error: BaseException | None = None) -> None:
        super().__init__(message)
        self.last_error = last_error


class MlflowApiError(TraceDeleteError):
    """A call to the MLflow server failed.

    Attributes:
        message: What the server (or the transport) said, secrets removed.
        status_code: The HTTP status, or ``None`` when there was no HTTP answer.
        error_code: MLflow's ``error_code`` (e.g. ``INVALID_PARAMETER_VALUE``), if any.
        experiment_id: The experiment the call was about, if any.
        batch_size: How many traces the call asked to delete, if it was a delete.
        endpoint: The API path that was called.
        outcome_unknown: True when the server may have done the work anyway.
        retry_after: Seconds the server asked us to wait, if it said so.
        server: The server's URL (credentials removed), when the client set it; its
            message then names it where that helps (a connection that failed, an answer
            that is not MLflow's).
    """

    outcome_unknown_default: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_code: str | None = None,
        experiment_id: str | None = None,
        batch_size: int | None = None,
        endpoint: str | None = None,
        outcome_unknown: bool | None = None,
        retry_after: float | None = None,
        server: str | None = None,
    ) -> None:
        self.message = message
        self.server = server
        self.status_code = status_code
        self.error_code = error_code
        self.experiment_id = experiment_id
        self.batch_size = batch_size
        self.endpoint = endpoint
        self.outcome_unknown = (
            self.outcome_unknown_default if outcome_unknown is None else outcome_unknown
        )
        self.retry_after = retry_after
        super().__init__(self._render())

    def _render(self) -> str:
        context = []
        if self.status_code is not None:
            context.append(f"HTTP {self.status_code}")
        if self.error_code:
            context.append(self.error_code)
        if self.endpoint:
            context.append(self.endpoint)
        if self.experiment_id is not None:
            context.append(f"experiment {self.experiment_id}")
        if self.batch_size is not None:
            context.append(f"batch {self.batch_size}")
        if self.retry_after is not None:
            context.append(f"retry after {self.retry_after:g}s")
        if self.outcome_unknown:
            context.append("outcome unknown")
        suffix = f" [{', '.join(context)}]" if context else ""
        return f"{self.message}{suffix}"

    def __reduce__(self) -> tuple[object, ...]:  # pragma: no cover - pickling support
        return (_rebuild, (type(self), self.message, self.__dict__))


def _rebuild(cls: type[MlflowApiError], message: str, state: dict[str, object]) -> MlflowApiError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class InvalidParameterError(MlflowApiError):
    """400: the server rejected the parameters (MLflow's message is kept)."""


class NotFoundError(MlflowApiError):
    """404 or ``RESOURCE_DOES_NOT_EXIST``: the experiment (or endpoint) does not exist."""


class AuthenticationError(MlflowApiError):
    """401: credentials missing or wrong."""


class PermissionDeniedError(MlflowApiError):
    """403: authenticated, but not allowed (deleting traces needs MANAGE)."""


class BatchTooLargeError(MlflowApiError):
    """503 "too many SQL variables": the batch is too large for the backend. Shrink it."""

    retry_decision = RetryDecision.SHRINK
    outcome = Outcome.TOO_LARGE


class ThrottledError(MlflowApiError):
    """429: the server (or a gateway) asks us to slow down."""

    retry_decision = RetryDecision.RETRY
    outcome = Outcome.THROTTLED


class ServerUnavailableError(MlflowApiError):
    """503: transient unavailability, e.g. SQLite's "database is locked"."""

    retry_decision = RetryDecision.RETRY
    outcome = Outcome.UNAVAILABLE


class ServerError(MlflowApiError):
    """Any other 5xx answer."""

    retry_decision = RetryDecision.RETRY
    outcome = Outcome.SERVER_ERROR


class ArtifactsUnavailableError(MlflowApiError):
    """The server does not serve artifacts (``mlflow server --no-serve-artifacts`` answers 503
    with that text). Never retried: trace deletion goes on, the artifacts are left."""


class NotMlflowServerError(MlflowApiError):
    """Whatever answered is not an MLflow tracking server: an HTML or plain-text 404 or 405
    where MLflow answers JSON (a plain web server, a proxy's page), a 2xx web page (an SSO
    login page), a redirect. Never retried, and never read as "no such experiment".

    """


class RedirectError(NotMlflowServerError):
    """3xx: something in front of MLflow redirects (an SSO login page). Never retried.

    Redirects are not followed, so nothing reached MLflow; retrying would only meet the same
    page again.
    """


class OutOfSelectionError(MlflowApiError):
    """A search answered a trace the job must not delete (another experiment, or newer
    than the job's cutoff): the answer is not MLflow's, so the job stops. Never retried."""


class InvalidResponseError(MlflowApiError):
    """A success status whose body is not what MLflow sends (truncated, not JSON, wrong shape)."""

    retry_decision = RetryDecision.RETRY
    outcome = Outcome.SERVER_ERROR
    outcome_unknown_default = True


class TransportError(MlflowApiError):
    """No HTTP answer at all: the connection failed, dropped, or timed out."""

    retry_decision = RetryDecision.RETRY
    outcome = Outcome.SERVER_ERROR
    outcome_unknown_default = True


class ConnectError(TransportError):
    """The request never reached the server, so nothing was done."""

    outcome_unknown_default = False


class RequestTimeoutError(TransportError):
    """The request was sent but no answer came in time: the server may have done the work."""

    outcome = Outcome.TIMEOUT
