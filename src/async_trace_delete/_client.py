"""The async MLflow traces client: the only module that talks HTTP.

It speaks MLflow's REST API (verified against mlflow 3.17.2's ``server/handlers.py``):

* ``POST /api/2.0/mlflow/traces/delete-traces`` — ``experiment_id``, ``max_timestamp_millis``,
  ``max_traces``, ``request_ids`` (the only ID field the server reads);
* ``POST /api/3.0/mlflow/traces/search`` — ``locations``, ``filter``, ``max_results`` (≤ 500),
  ``order_by``, ``page_token`` (an *offset*: deleting while paging forward skips rows);
* ``GET /api/2.0/mlflow/experiments/get`` and ``/get-by-name``.

Every transport failure and error status is mapped into :mod:`._exceptions`; no ``httpx``
exception escapes. Arguments are checked against MLflow's rules *before* any request is sent.
"""

from __future__ import annotations

import base64
import json
import math
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Self

import httpx
from pydantic import SecretStr

from ._config import ClientConfig
from ._exceptions import (
    AuthenticationError,
    BatchTooLargeError,
    ConnectError,
    EngineClosedError,
    InvalidParameterError,
    InvalidResponseError,
    MlflowApiError,
    NotFoundError,
    PermissionDeniedError,
    RedirectError,
    RequestTimeoutError,
    ServerError,
    ServerUnavailableError,
    ThrottledError,
    TransportError,
    UsageError,
)

__all__ = [
    "Experiment",
    "TracePage",
    "TraceSummary",
    "TracesClient",
    "error_for_status",
    "iter_pages",
    "parse_retry_after",
    "parse_rfc3339_millis",
]

DELETE_PATH = "/api/2.0/mlflow/traces/delete-traces"
SEARCH_PATH = "/api/3.0/mlflow/traces/search"
GET_EXPERIMENT_PATH = "/api/2.0/mlflow/experiments/get"
GET_EXPERIMENT_BY_NAME_PATH = "/api/2.0/mlflow/experiments/get-by-name"
MAX_SEARCH_PAGE = 500

_TOO_MANY_VARIABLES = "too many sql variables"
_MLFLOW_ERROR_CODE = re.compile(r"[A-Z][A-Z0-9_]*")  # INTERNAL_ERROR, TEMPORARILY_UNAVAILABLE, ...
_MAX_ERROR_TEXT = 500

try:
    _VERSION = version("async-trace-delete")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = "0+unknown"


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """One trace as search returns it: enough to decide and to delete."""

    trace_id: str
    timestamp_ms: int
    state: str
    experiment_id: str | None = None
    """The experiment the answer says the trace belongs to (``None`` if it did not say)."""


@dataclass(frozen=True, slots=True)
class TracePage:
    """One page of search results and the token of the next page (an offset), if any."""

    traces: tuple[TraceSummary, ...]
    next_page_token: str | None


@dataclass(frozen=True, slots=True)
class Experiment:
    """An MLflow experiment."""

    experiment_id: str
    name: str
    lifecycle_stage: str


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header: delay-seconds or an HTTP date (RFC 9110 §10.2.3).

    Args:
        value: The header value, or ``None``.
        now: The current Unix time, for HTTP dates (default: ``time.time()``).

    Returns:
        Seconds to wait (never negative), or ``None`` if absent or unparseable.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def parse_rfc3339_millis(text: str) -> int:
    """Convert an RFC 3339 timestamp (protobuf JSON ``Timestamp``) to epoch milliseconds.

    Exact for any number of fractional digits (0 to 9): no float rounding.
    """
    stamp = text.strip()
    if stamp.endswith(("Z", "z")):
        stamp = stamp[:-1] + "+00:00"
    fraction_ms = 0
    if "." in stamp:
        head, rest = stamp.split(".", 1)
        digits = ""
        for char in rest:
            if not char.isdigit():
                break
            digits += char
        tail = rest[len(digits) :]
        fraction_ms = int((digits + "000")[:3]) if digits else 0
        stamp = head + tail
    parsed = datetime.fromisoformat(stamp)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {text!r}")
    return int(parsed.timestamp()) * 1000 + fraction_ms


class _SecretAuth(httpx.Auth):
    """Adds the Authorization header on each request; the secret stays out of every repr."""

    def __init__(self, header_value: SecretStr) -> None:
        self._header_value = header_value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header_value.get_secret_value()
        yield request

    def __repr__(self) -> str:
        return "_SecretAuth(***)"


def _build_auth(config: ClientConfig) -> httpx.Auth | None:
    if config.auth_scheme == "basic":
        assert config.username is not None
        assert config.password is not None
        pair = f"{config.username}:{config.password.get_secret_value()}".encode()
        return _SecretAuth(SecretStr(f"Basic {base64.b64encode(pair).decode('ascii')}"))
    if config.auth_scheme == "bearer":
        assert config.token is not None
        return _SecretAuth(SecretStr(f"Bearer {config.token.get_secret_value()}"))
    return None


def _build_verify(config: ClientConfig) -> ssl.SSLContext | bool:
    if config.insecure_tls:
        return False
    if config.server_cert_path:
        return ssl.create_default_context(cafile=config.server_cert_path)
    return True


class TracesClient:
    """Async client for MLflow's trace deletion and search endpoints.

    Use it as an async context manager::

        async with TracesClient(ClientConfig.from_env()) as client:
            deleted = await client.delete_traces("1", max_timestamp_millis=cutoff, max_traces=500)

    Args:
        config: Where and how to connect; default ``ClientConfig.from_env(**overrides)``.
        transport: An httpx transport to use instead of the network (the test seam).
        clock: Unix time source for ``Retry-After`` dates (default ``time.time``).
        **overrides: Fields for ``ClientConfig.from_env`` when ``config`` is not given.
    """

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        **overrides: Any,
    ) -> None:
        self._config = config if config is not None else ClientConfig.from_env(**overrides)
        self._transport = transport
        self._clock = clock
        self._http: httpx.AsyncClient | None = None
        self._closed = False
        self._secrets = _secret_values(self._config)

    def __repr__(self) -> str:
        scheme = self._config.auth_scheme or "none"
        return f"TracesClient(tracking_uri={self._config.tracking_uri!r}, auth={scheme})"

    @property
    def config(self) -> ClientConfig:
        """The connection settings (secrets are ``SecretStr``)."""
        return self._config

    async def __aenter__(self) -> Self:
        self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def open(self) -> None:
        """Create the underlying HTTP client (done by ``async with``)."""
        if self._closed:
            raise EngineClosedError("this TracesClient is closed; create a new one")
        if self._http is not None:
            return
        config = self._config
        timeout = httpx.Timeout(config.timeout, connect=min(config.timeout, 10.0))
        self._http = httpx.AsyncClient(
            base_url=config.base_url,
            auth=_build_auth(config),
            verify=_build_verify(config),
            timeout=timeout,
            transport=self._transport,
            headers={"User-Agent": f"async-trace-delete/{_VERSION}"},
            follow_redirects=False,
            trust_env=False,
        )

    async def aclose(self) -> None:
        """Close the HTTP client; the client cannot be reopened."""
        self._closed = True
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    # -- public API ---------------------------------------------------------------------

    async def delete_traces(
        self,
        experiment_id: str,
        *,
        max_timestamp_millis: int | None = None,
        max_traces: int | None = None,
        trace_ids: Sequence[str] | None = None,
        request_timeout: float | None = None,
    ) -> int:
        """Delete traces of one experiment; return how many the server deleted.

        Exactly one of ``max_timestamp_millis`` (delete traces at or before it, oldest first,
        at most ``max_traces``) and ``trace_ids`` (delete exactly these; the server ignores
        unknown ones) must be given, as in ``MlflowClient.delete_traces``.

        Raises:
            UsageError: the arguments break MLflow's rules (nothing is sent).
            MlflowApiError: the call failed; see its subclasses.
        """
        _check_experiment_id(experiment_id)
        body: dict[str, Any] = {"experiment_id": experiment_id}
        batch_size: int | None
        if (max_timestamp_millis is None) == (trace_ids is None):
            raise UsageError(
                "give exactly one of max_timestamp_millis and trace_ids "
                "(MLflow deletes by cutoff or by IDs)"
            )
        if max_timestamp_millis is not None:
            if not _is_int(max_timestamp_millis) or max_timestamp_millis <= 0:
                raise UsageError(
                    f"max_timestamp_millis must be an integer > 0, got {max_timestamp_millis!r} "
                    "(0 means 'delete everything' on some servers)"
                )
            body["max_timestamp_millis"] = max_timestamp_millis
            if max_traces is not None:
                if not _is_int(max_traces) or max_traces <= 0:
                    raise UsageError(f"max_traces must be an integer > 0, got {max_traces!r}")
                body["max_traces"] = max_traces
            batch_size = max_traces
        else:
            assert trace_ids is not None
            if max_traces is not None:
                raise UsageError("max_traces cannot be used with trace_ids (MLflow's rule)")
            if isinstance(trace_ids, str):
                raise UsageError("trace_ids must be a list of IDs, not a single string")
            ids = list(trace_ids)
            if not ids:
                raise UsageError("trace_ids must not be empty")
            if not all(isinstance(item, str) and item for item in ids):
                raise UsageError("trace_ids must all be non-empty strings")
            body["request_ids"] = ids
            batch_size = len(ids)
        payload = await self._call(
            "POST",
            DELETE_PATH,
            json_body=body,
            experiment_id=experiment_id,
            batch_size=batch_size,
            request_timeout=request_timeout,
        )
        deleted = payload.get("traces_deleted", 0)  # proto3 JSON may omit a zero
        if not _is_int(deleted) or deleted < 0:
            raise InvalidResponseError(
                f"delete-traces answered traces_deleted={deleted!r}",
                status_code=200,
                endpoint=DELETE_PATH,
                experiment_id=experiment_id,
                batch_size=batch_size,
            )
        return int(deleted)

    async def search_traces(
        self,
        experiment_id: str,
        *,
        filter_string: str | None = None,
        max_results: int = MAX_SEARCH_PAGE,
        order_by: Sequence[str] = ("timestamp_ms ASC",),
        page_token: str | None = None,
    ) -> TracePage:
        """Fetch one page of an experiment's traces.

        Args:
            experiment_id: The experiment to search.
            filter_string: MLflow search filter (clauses joined by AND).
            max_results: Page size, 1..500.
            order_by: Order clauses; oldest first by default.
            page_token: The previous page's ``next_page_token`` (an offset).
        """
        _check_experiment_id(experiment_id)
        if not _is_int(max_results) or not 1 <= max_results <= MAX_SEARCH_PAGE:
            raise UsageError(f"max_results must be an integer in 1..{MAX_SEARCH_PAGE}")
        body: dict[str, Any] = {
            "locations": [
                {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}
            ],
            "max_results": max_results,
            "order_by": list(order_by),
        }
        if filter_string:
            body["filter"] = filter_string
        if page_token:
            body["page_token"] = page_token
        payload = await self._call("POST", SEARCH_PATH, json_body=body, experiment_id=experiment_id)
        try:
            traces = tuple(_trace_summary(item) for item in payload.get("traces", []))
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidResponseError(
                f"search answered an unexpected trace shape: {error}",
                status_code=200,
                endpoint=SEARCH_PATH,
                experiment_id=experiment_id,
                outcome_unknown=False,
            ) from None
        token = payload.get("next_page_token") or None
        return TracePage(traces=traces, next_page_token=token if isinstance(token, str) else None)

    async def iter_traces(
        self,
        experiment_id: str,
        *,
        filter_string: str | None = None,
        page_size: int = MAX_SEARCH_PAGE,
        order_by: Sequence[str] = ("timestamp_ms ASC",),
    ) -> AsyncIterator[TraceSummary]:
        """Yield every matching trace, page by page.

        Do not delete what you iterate while iterating: the page token is an offset.
        """

        def fetch(token: str | None) -> Awaitable[TracePage]:
            return self.search_traces(
                experiment_id,
                filter_string=filter_string,
                max_results=page_size,
                order_by=order_by,
                page_token=token,
            )

        async for trace in iter_pages(fetch):
            yield trace

    async def count_traces(self, experiment_id: str, *, filter_string: str | None = None) -> int:
        """Count the traces matching a filter, exactly (pages through all of them)."""
        count = 0
        async for _ in self.iter_traces(experiment_id, filter_string=filter_string):
            count += 1
        return count

    async def get_experiment(self, experiment_id: str) -> Experiment:
        """Look an experiment up by ID. Raises :class:`NotFoundError` if it does not exist."""
        _check_experiment_id(experiment_id)
        payload = await self._call(
            "GET",
            GET_EXPERIMENT_PATH,
            params={"experiment_id": experiment_id},
            experiment_id=experiment_id,
        )
        return _experiment(payload, GET_EXPERIMENT_PATH)

    async def get_experiment_by_name(self, name: str) -> Experiment:
        """Look an experiment up by name. Raises :class:`NotFoundError` if none has it."""
        if not isinstance(name, str) or not name.strip():
            raise UsageError("experiment name must be a non-empty string")
        payload = await self._call(
            "GET", GET_EXPERIMENT_BY_NAME_PATH, params={"experiment_name": name}
        )
        return _experiment(payload, GET_EXPERIMENT_BY_NAME_PATH)

    # -- plumbing -------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        experiment_id: str | None = None,
        batch_size: int | None = None,
        request_timeout: float | None = None,
    ) -> dict[str, Any]:
        if self._http is None:
            raise EngineClosedError("TracesClient is not open; use `async with TracesClient(...)`")
        context: dict[str, Any] = {
            "endpoint": path,
            "experiment_id": experiment_id,
            "batch_size": batch_size,
        }
        timeout: Any = (
            httpx.USE_CLIENT_DEFAULT
            if request_timeout is None
            else httpx.Timeout(request_timeout, connect=min(request_timeout, 10.0))
        )
        # The mapped error is raised outside the `except` blocks so that it does not even
        # keep the httpx exception (and the request with its Authorization header) as its
        # __context__.
        failure: MlflowApiError | None = None
        try:
            response = await self._http.request(
                method, path, json=json_body, params=params, timeout=timeout
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            failure = ConnectError(
                f"could not connect to the MLflow server: {type(error).__name__}", **context
            )
        except httpx.TimeoutException as error:
            failure = RequestTimeoutError(
                f"no answer from the MLflow server in time: {type(error).__name__}", **context
            )
        except httpx.HTTPError as error:
            failure = TransportError(
                "the connection to the MLflow server failed: "
                f"{type(error).__name__}: {self._scrub(str(error))}",
                **context,
            )
        if failure is not None:
            raise failure
        if response.is_success:
            try:
                payload = response.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise InvalidResponseError(
                    f"the server answered {response.status_code} with a body that is not JSON: "
                    f"{self._scrub(_excerpt(response.text))!r}",
                    status_code=response.status_code,
                    **context,
                ) from None
            if not isinstance(payload, dict):
                raise InvalidResponseError(
                    "the server answered JSON that is not an object",
                    status_code=response.status_code,
                    **context,
                )
            return payload
        raise self._error_for(response, context)

    def _scrub(self, text: str) -> str:
        """Remove our own credentials from text the server sent back (a gateway may echo
        the Authorization header)."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _error_for(self, response: httpx.Response, context: Mapping[str, Any]) -> MlflowApiError:
        answer = _error_body(response)
        return error_for_status(
            response.status_code,
            error_code=answer.error_code,
            message=self._scrub(answer.message),
            from_mlflow=answer.from_mlflow,
            retry_after=parse_retry_after(response.headers.get("Retry-After"), now=self._clock()),
            location=response.headers.get("Location"),
            **context,
        )


# Gateway statuses: whatever the body says, something in front of MLflow gave up on it.
_GATEWAY_STATUSES = frozenset({502, 504, 520, 521, 522, 523, 524, 599})


def error_for_status(
    status: int,
    *,
    error_code: str | None,
    message: str,
    from_mlflow: bool,
    retry_after: float | None = None,
    location: str | None = None,
    **context: Any,
) -> MlflowApiError:
    """Map one error answer, given as plain values, to the exception it means.

    The one rule that matters for safety: a 5xx that is not MLflow's own JSON error (a
    gateway's 502/504, Envoy's plain-text 503, an nginx HTML 500, Cloudflare's 520-524, a
    599, an empty or unreadable body) means *the work may have been done*: its outcome is
    unknown. MLflow's own JSON 5xx (its handler caught the failure, the transaction rolled
    back) is certain.

    Args:
        status: The HTTP status (not 2xx).
        error_code: MLflow's ``error_code``, if the body had one.
        message: What the body said (secrets already removed).
        from_mlflow: Whether the body is MLflow's JSON error shape.
        retry_after: The parsed ``Retry-After``, in seconds.
        location: The ``Location`` header of a redirect.
        **context: ``endpoint``, ``experiment_id``, ``batch_size`` for the error's context.
    """
    details: dict[str, Any] = {"status_code": status, "error_code": error_code, **context}
    if 500 <= status < 600:
        unknown = status in _GATEWAY_STATUSES or not from_mlflow
        if status == 503 and from_mlflow and _TOO_MANY_VARIABLES in message.lower():
            return BatchTooLargeError(
                f"the batch is too large for the server's database: {message}", **details
            )
        if status == 503:
            return ServerUnavailableError(
                message or "service unavailable",
                retry_after=retry_after,
                outcome_unknown=unknown,
                **details,
            )
        if status in _GATEWAY_STATUSES:
            # A gateway gave up on the upstream: it may have done the work anyway.
            return ServerError(
                message or "bad gateway",
                outcome_unknown=True,
                retry_after=retry_after,
                **details,
            )
        return ServerError(
            message or "internal server error",
            outcome_unknown=unknown,
            retry_after=retry_after,
            **details,
        )
    if status == 413:
        return BatchTooLargeError(f"the request is too large: {message}", **details)
    if status == 429:
        return ThrottledError(message or "too many requests", retry_after=retry_after, **details)
    if status == 401:
        return AuthenticationError(
            f"authentication failed: {message or 'credentials missing or wrong'}", **details
        )
    if status == 403:
        return PermissionDeniedError(
            f"permission denied: {message or 'not allowed'} (deleting traces needs MANAGE "
            "permission on the experiment)",
            **details,
        )
    if status == 404 or error_code == "RESOURCE_DOES_NOT_EXIST":
        return NotFoundError(message or "not found", **details)
    if 300 <= status < 400:
        return RedirectError(
            f"the server redirected to {location or '?'!r} (a login page or a moved server?); "
            "redirects are not followed: use the MLflow server's own URL as tracking_uri, "
            "with credentials it accepts",
            **details,
        )
    if status == 408:
        return RequestTimeoutError(
            message or "the server timed out reading the request",
            outcome_unknown=False,
            **details,
        )
    return InvalidParameterError(message or "the server rejected the request", **details)


async def iter_pages(
    fetch: Callable[[str | None], Awaitable[TracePage]],
) -> AsyncIterator[TraceSummary]:
    """Yield the traces of every page ``fetch(page_token)`` answers, until a page has no
    next token (or no traces)."""
    token: str | None = None
    while True:
        page = await fetch(token)
        for trace in page.traces:
            yield trace
        token = page.next_page_token
        if not token or not page.traces:
            return


def _secret_values(config: ClientConfig) -> tuple[str, ...]:
    """Every form in which our credentials could come back in a server's message."""
    values: list[str] = []
    if config.token is not None:
        values.append(config.token.get_secret_value())
    if config.password is not None:
        password = config.password.get_secret_value()
        pair = f"{config.username}:{password}".encode()
        values += [base64.b64encode(pair).decode("ascii"), password]
    # Longest first, so a value containing another is removed whole.
    return tuple(sorted((value for value in values if value), key=len, reverse=True))


def _check_experiment_id(experiment_id: object) -> None:
    if not isinstance(experiment_id, str) or not experiment_id.strip():
        raise UsageError(f"experiment_id must be a non-empty string, got {experiment_id!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ERROR_TEXT else text[:_MAX_ERROR_TEXT] + "…"


@dataclass(frozen=True, slots=True)
class _ErrorBody:
    error_code: str | None
    message: str
    from_mlflow: bool


def _error_body(response: httpx.Response) -> _ErrorBody:
    """MLflow answers errors as JSON ``{"error_code": ..., "message": ...}``; its basic-auth
    app, proxies, gateways and CDNs answer plain text or HTML."""
    try:
        payload = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        payload = None
    if isinstance(payload, dict):
        code = payload.get("error_code")
        message = payload.get("message")
        from_mlflow = isinstance(code, str) and bool(_MLFLOW_ERROR_CODE.fullmatch(code))
        return _ErrorBody(
            code if isinstance(code, str) else None,
            _excerpt(message) if isinstance(message, str) else _excerpt(response.text),
            from_mlflow and isinstance(message, str),
        )
    return _ErrorBody(None, _excerpt(response.text), False)


def _trace_summary(item: Mapping[str, Any]) -> TraceSummary:
    trace_id = item["trace_id"]
    if not isinstance(trace_id, str):
        raise TypeError("trace_id is not a string")
    request_time = item["request_time"]
    if not isinstance(request_time, str):
        raise TypeError("request_time is not a string")
    state = item.get("state", "STATE_UNSPECIFIED")
    experiment_id: str | None = None
    location = item.get("trace_location")
    if isinstance(location, dict):
        experiment = location.get("mlflow_experiment")
        if isinstance(experiment, dict) and experiment.get("experiment_id") is not None:
            experiment_id = str(experiment["experiment_id"])
    return TraceSummary(
        trace_id=trace_id,
        timestamp_ms=parse_rfc3339_millis(request_time),
        state=str(state),
        experiment_id=experiment_id,
    )


def _experiment(payload: Mapping[str, Any], endpoint: str) -> Experiment:
    data = payload.get("experiment")
    if not isinstance(data, dict) or not isinstance(data.get("experiment_id"), str):
        raise InvalidResponseError(
            "the server answered an unexpected experiment shape",
            status_code=200,
            endpoint=endpoint,
            outcome_unknown=False,
        )
    return Experiment(
        experiment_id=data["experiment_id"],
        name=str(data.get("name", "")),
        lifecycle_stage=str(data.get("lifecycle_stage", "active")),
    )
