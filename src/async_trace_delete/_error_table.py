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

No HTTP answer at all (:func:`transport_error_for`) is mapped here too, from the kind of
failure the client saw and the exception chain under it: :func:`connection_cause` reads the
chain (``ConnectionRefusedError``, ``socket.gaierror``, ``ssl.SSLError``, ``TimeoutError``)
into words a person can act on, with the server's URL in the message.

An answer that is not MLflow's (:func:`not_mlflow_answer`) is its own case: MLflow's REST
errors are JSON with an ``error_code``, so an HTML 404, a login page or a proxy's page says
that the URL points at something else, never that an experiment does not exist.
"""

from __future__ import annotations

import errno
import re
import socket
import ssl
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from ._exceptions import (
    ArtifactsUnavailableError,
    AuthenticationError,
    BatchTooLargeError,
    ConnectError,
    InvalidParameterError,
    MlflowApiError,
    NotFoundError,
    NotMlflowServerError,
    PermissionDeniedError,
    RedirectError,
    RequestTimeoutError,
    ServerError,
    ServerUnavailableError,
    ThrottledError,
    TransportError,
)
from ._wire import parse_retry_after

__all__ = [
    "GATEWAY_STATUSES",
    "ConnectionCause",
    "TransportKind",
    "connection_cause",
    "error_for",
    "is_mlflow_error_code",
    "not_mlflow_answer",
    "transport_error_for",
]

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
    server: str | None = None,
    endpoint_optional: bool = False,
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
        server: The server's URL (credentials removed), named by the messages that need it.
        endpoint_optional: The endpoint is one an older MLflow may lack (``traces/metrics``,
            ``batchGetInfos``, the artifact API): a 404 that is not MLflow's JSON is then a
            missing endpoint (:class:`NotFoundError`, the caller falls back), not a server
            that is not MLflow.
        **context: ``endpoint``, ``experiment_id``, ``batch_size`` for the error's context.
    """
    from_mlflow = is_mlflow_error_code(error_code) and message is not None
    shown = message if message is not None else text
    details: dict[str, Any] = {
        "status_code": status,
        "error_code": error_code,
        "server": server,
        **context,
    }
    retry_after = parse_retry_after(_header(headers, "Retry-After"), now=now)
    if 500 <= status < 600:
        return _server_error(status, shown, from_mlflow, retry_after, details)
    if status in _NOT_MLFLOW_STATUSES and not from_mlflow and not endpoint_optional:
        return not_mlflow_answer(status, headers, text, server=server, **context)
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
            f"{_the_server(server)} did not answer like an MLflow tracking server (got a "
            f"{status} redirect to {location or '?'!r} from {context.get('endpoint') or '?'}: "
            "a login page or a moved server?); redirects are not followed: use the MLflow "
            "server's own URL as the tracking URI, with credentials it accepts",
            **details,
        )
    if status == 408:
        return RequestTimeoutError(
            shown or "the server timed out reading the request", outcome_unknown=False, **details
        )
    return InvalidParameterError(shown or "the server rejected the request", **details)


# Statuses MLflow answers with its JSON error (or not at all, for our calls): the same status
# without MLflow's JSON error comes from something else (a web server, a proxy's page).
_NOT_MLFLOW_STATUSES = frozenset({404, 405})
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _the_server(server: str | None) -> str:
    return f"the server at {server}" if server else "the server"


def not_mlflow_answer(
    status: int,
    headers: Mapping[str, str],
    text: str,
    *,
    server: str | None,
    outcome_unknown: bool = False,
    **context: Any,
) -> NotMlflowServerError:
    """The error for an answer that is not MLflow's: an HTML or plain-text 404/405, or a 2xx
    web page where MLflow answers JSON.

    Args:
        status: The HTTP status.
        headers: The response headers (its ``Content-Type`` is named).
        text: An excerpt of the body, secrets removed (an HTML page's title is named).
        server: The server's URL, credentials removed.
        outcome_unknown: Whether the work may have been done anyway (a 2xx page answering
            a delete: something in front of MLflow answered, nobody knows what it forwarded).
        **context: ``endpoint``, ``experiment_id``, ``batch_size``.
    """
    content_type = (_header(headers, "Content-Type") or "").partition(";")[0].strip()
    got = f"{status} {content_type or 'without a content type'}"
    title = _TITLE.search(text)
    if title and title.group(1).strip():
        got += f" {' '.join(title.group(1).split())[:80]!r}"
    endpoint = context.get("endpoint")
    older = (
        "; an MLflow server older than 3.0 has no /api/3.0 endpoints"
        if endpoint and "/api/3.0/" in endpoint
        else ""
    )
    return NotMlflowServerError(
        f"{_the_server(server)} did not answer like an MLflow tracking server (got {got} "
        f"from {endpoint or '?'}, where MLflow answers JSON){older}; check that the tracking "
        "URI is the MLflow server's own address, not a web page, a proxy or a login page in "
        "front of it",
        status_code=status,
        server=server,
        outcome_unknown=outcome_unknown,
        **context,
    )


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


# -- no HTTP answer at all ---------------------------------------------------------------------

TransportKind = Literal["connect", "pool", "timeout", "other"]
"""What the client saw: the connection failed (``connect``: nothing was sent), no free
connection in time (``pool``), sent but unanswered in time (``timeout``), or it broke
(``other``: the request may have arrived)."""

_TLS_HINT = (
    "if the server's certificate is signed by your own CA, give it with "
    "MLFLOW_TRACKING_SERVER_CERT_PATH; MLFLOW_TRACKING_INSECURE_TLS=true skips the check "
    "(never for a server you do not control)"
)
# OpenSSL's reasons when the other end does not speak TLS at all (plain HTTP on that port).
_NOT_TLS_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"}
)


@dataclass(frozen=True, slots=True)
class ConnectionCause:
    """Why a connection failed, as a person would say it.

    Attributes:
        what: The cause (``connection refused``, ``no such host``...).
        check: What to check, naming the address, port, or setting involved.
    """

    what: str
    check: str


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and the exceptions under it (``__cause__``, else ``__context__``)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def connection_cause(error: BaseException, server: str) -> ConnectionCause | None:
    """Read why a connection to ``server`` failed off the exception chain of ``error``.

    Pure: looks only at the exceptions' types and fields. The most specific cause found
    anywhere in the chain wins (a certificate failure over a TLS failure over a refusal).

    Args:
        error: The transport's exception (``httpx.ConnectError`` and the ones it wraps).
        server: The server's URL (credentials removed), whose host and port the advice names.

    Returns:
        The cause and what to check, or ``None`` when the chain says nothing known.
    """
    parts = urlsplit(server)
    host = parts.hostname or server
    port = parts.port or (443 if parts.scheme == "https" else 80)
    chain = list(_chain(error))
    for item in chain:
        if isinstance(item, ssl.SSLCertVerificationError):
            reason = item.verify_message or item.reason or "not trusted"
            return ConnectionCause(f"the TLS certificate was refused ({reason})", _TLS_HINT)
    for item in chain:
        if isinstance(item, ssl.SSLError):
            reason = str(item.reason or "")
            if reason in _NOT_TLS_REASONS:
                return ConnectionCause(
                    f"the TLS handshake failed ({reason.lower().replace('_', ' ')}): port "
                    f"{port} of {host} does not seem to speak TLS",
                    "if the server serves plain HTTP, use http:// in the tracking URI",
                )
            return ConnectionCause(
                f"the TLS handshake failed ({reason.lower().replace('_', ' ') or item})",
                _TLS_HINT,
            )
    for item in chain:
        if isinstance(item, socket.gaierror):
            if item.errno == socket.EAI_AGAIN:
                return ConnectionCause(
                    f"the host name {host!r} could not be resolved right now",
                    "check the DNS server and the network, then try again",
                )
            return ConnectionCause(
                f"no such host: {host!r} does not resolve",
                "check the host name in the tracking URI (a typo? a VPN not connected?)",
            )
    for item in chain:
        if isinstance(item, ConnectionRefusedError):
            return ConnectionCause(
                f"connection refused: nothing listens on port {port} of {host}",
                f"is `mlflow server` running at {server}, on port {port}?",
            )
    for item in chain:
        if isinstance(item, TimeoutError) or type(item).__name__.endswith("Timeout"):
            return ConnectionCause(
                f"the connection to {host}:{port} timed out",
                "is the host reachable, and the port open (a firewall that drops packets)?",
            )
    for item in chain:
        if isinstance(item, OSError) and item.errno in {errno.ENETUNREACH, errno.EHOSTUNREACH}:
            return ConnectionCause(
                f"{host} is unreachable ({item.strerror or 'no route'})",
                "check the address and the network (a VPN, a proxy?)",
            )
    for item in chain:
        if isinstance(item, ConnectionResetError):
            return ConnectionCause(
                f"{host}:{port} closed the connection",
                "is it an MLflow server, and does it speak plain HTTP or TLS (http:// or "
                "https://)?",
            )
    return None


def transport_error_for(
    kind: TransportKind,
    error: BaseException,
    *,
    server: str,
    detail: str,
    **context: Any,
) -> TransportError:
    """The exception a request without an HTTP answer means.

    Args:
        kind: What the client saw (see :data:`TransportKind`).
        error: The transport's exception, whose chain says why.
        server: The server's URL, credentials removed.
        detail: ``type: text`` of the transport's exception, secrets removed (shown when
            the chain says nothing known).
        **context: ``endpoint``, ``experiment_id``, ``batch_size``.
    """
    if kind == "pool":
        return ConnectError(
            f"no free connection to the MLflow server at {server} in time ({detail})",
            server=server,
            **context,
        )
    cause = connection_cause(error, server)
    if kind == "connect":
        said = f"{cause.what}; {cause.check}" if cause else detail
        return ConnectError(
            f"could not connect to the MLflow server at {server}: {said}",
            server=server,
            **context,
        )
    if kind == "timeout":
        return RequestTimeoutError(
            f"no answer from the MLflow server at {server} in time ({detail})",
            server=server,
            **context,
        )
    said = f"{cause.what}" if cause else detail
    return TransportError(
        f"the connection to the MLflow server at {server} failed: {said}", server=server, **context
    )
