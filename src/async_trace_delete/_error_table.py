"""The error table: one error answer, as plain values, to the exception it means.

Pure: no ``httpx``, no I/O. :class:`~._client.TracesClient` reads the status, MLflow's
``error_code`` and ``message`` and the headers off a response and asks :func:`error_for`;
what the engine then does (retry, shrink, fail; what the controllers learn; whether the
work may have been done) is an attribute of the class it gets back (httpx keeps its
transport errors in one map, ``HTTPCORE_EXC_MAP``, in the same spirit).

The one rule that matters for safety: a 5xx that is not MLflow's own JSON error (a gateway's
502/504, Envoy's plain-text 503, an nginx HTML 500, Cloudflare's 520-524, a 599, an empty
or unreadable body) means *the work may have been done*: its outcome is unknown. MLflow's
own JSON 5xx (its handler caught the failure, the transaction rolled back) is certain.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ._exceptions import (
    ArtifactsUnavailableError,
    AuthenticationError,
    BatchTooLargeError,
    InvalidParameterError,
    MlflowApiError,
    NotFoundError,
    PermissionDeniedError,
    RedirectError,
    RequestTimeoutError,
    ServerError,
    ServerUnavailableError,
    ThrottledError,
)
from ._wire import parse_retry_after

__all__ = ["GATEWAY_STATUSES", "error_for", "is_mlflow_error_code"]

GATEWAY_STATUSES = frozenset({502, 504, 520, 521, 522, 523, 524, 599})
"""Whatever the body says, something in front of MLflow gave up on the upstream."""

_MLFLOW_ERROR_CODE = re.compile(r"[A-Z][A-Z0-9_]*")  # INTERNAL_ERROR, TEMPORARILY_UNAVAILABLE
_TOO_MANY_VARIABLES = "too many sql variables"
_ARTIFACTS_NOT_SERVED = "--no-serve-artifacts"  # mlflow's plain-text 503 of its artifact API

# 4xx statuses with one meaning: the class and how its message reads.
_CLIENT_ERRORS: Mapping[int, tuple[type[MlflowApiError], Callable[[str], str]]] = {
    413: (BatchTooLargeError, lambda text: f"the request is too large: {text}"),
    429: (ThrottledError, lambda text: text or "too many requests"),
    401: (
        AuthenticationError,
        lambda text: f"authentication failed: {text or 'credentials missing or wrong'}",
    ),
    403: (
        PermissionDeniedError,
        lambda text: (
            f"permission denied: {text or 'not allowed'} (deleting traces and their "
            "artifacts needs MANAGE permission on the experiment, reading them READ)"
        ),
    ),
    404: (NotFoundError, lambda text: text or "not found"),
}


def is_mlflow_error_code(code: object) -> bool:
    """Whether ``code`` has the shape of MLflow's ``error_code`` (``INTERNAL_ERROR``...)."""
    return isinstance(code, str) and bool(_MLFLOW_ERROR_CODE.fullmatch(code))


def error_for(
    status: int,
    error_code: str | None,
    message: str | None,
    headers: Mapping[str, str],
    *,
    text: str = "",
    now: float | None = None,
    **context: Any,
) -> MlflowApiError:
    """The exception one error answer means.

    Args:
        status: The HTTP status (not 2xx).
        error_code: MLflow's ``error_code``, if the body had one.
        message: MLflow's ``message``, if the body was a JSON error with one (secrets
            already removed); ``None`` for a body that is not MLflow's error shape.
        headers: The response headers (``Retry-After``, ``Location``); case-insensitive
            lookups need an ``httpx.Headers`` or lower-case keys.
        text: An excerpt of the body, shown when there is no ``message``.
        now: Unix time, for a ``Retry-After`` given as a date.
        **context: ``endpoint``, ``experiment_id``, ``batch_size`` for the error's context.
    """
    from_mlflow = is_mlflow_error_code(error_code) and message is not None
    shown = message if message is not None else text
    details: dict[str, Any] = {"status_code": status, "error_code": error_code, **context}
    retry_after = parse_retry_after(_header(headers, "Retry-After"), now=now)
    if 500 <= status < 600:
        return _server_error(status, shown, from_mlflow, retry_after, details)
    if status in _CLIENT_ERRORS:
        cls, render = _CLIENT_ERRORS[status]
        if cls is ThrottledError:
            details["retry_after"] = retry_after
        return cls(render(shown), **details)
    if error_code == "RESOURCE_DOES_NOT_EXIST":
        return NotFoundError(shown or "not found", **details)
    if 300 <= status < 400:
        location = _header(headers, "Location")
        return RedirectError(
            f"the server redirected to {location or '?'!r} (a login page or a moved server?); "
            "redirects are not followed: use the MLflow server's own URL as tracking_uri, "
            "with credentials it accepts",
            **details,
        )
    if status == 408:
        return RequestTimeoutError(
            shown or "the server timed out reading the request", outcome_unknown=False, **details
        )
    return InvalidParameterError(shown or "the server rejected the request", **details)


def _server_error(
    status: int,
    shown: str,
    from_mlflow: bool,
    retry_after: float | None,
    details: dict[str, Any],
) -> MlflowApiError:
    unknown = status in GATEWAY_STATUSES or not from_mlflow
    if status == 503 and from_mlflow and _TOO_MANY_VARIABLES in shown.lower():
        return BatchTooLargeError(
            f"the batch is too large for the server's database: {shown}", **details
        )
    if status == 503 and _ARTIFACTS_NOT_SERVED in shown:
        return ArtifactsUnavailableError(
            f"the server does not serve artifacts: {shown}", outcome_unknown=False, **details
        )
    if status == 503:
        return ServerUnavailableError(
            shown or "service unavailable",
            retry_after=retry_after,
            outcome_unknown=unknown,
            **details,
        )
    default = "bad gateway" if status in GATEWAY_STATUSES else "internal server error"
    return ServerError(
        shown or default, outcome_unknown=unknown, retry_after=retry_after, **details
    )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    return value
