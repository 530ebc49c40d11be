"""The async MLflow traces client: the only module that talks HTTP.

It speaks MLflow's REST API (verified against mlflow 3.17.2's ``server/handlers.py``):

* ``POST /api/2.0/mlflow/traces/delete-traces`` — ``experiment_id``, ``max_timestamp_millis``,
  ``max_traces``, ``request_ids`` (the only ID field the server reads);
* ``POST /api/3.0/mlflow/traces/search`` — ``locations``, ``filter``, ``max_results`` (≤ 500),
  ``order_by``, ``page_token`` (an *offset*: deleting while paging forward skips rows);
* ``GET /api/2.0/mlflow/experiments/get`` and ``/get-by-name``;
* ``POST /api/3.0/mlflow/traces/batchGetInfos`` — which of some trace IDs exist (any
  experiment);
* the artifact proxy: ``GET /api/2.0/mlflow-artifacts/artifacts?path=`` lists a folder,
  ``DELETE /api/2.0/mlflow-artifacts/artifacts/<path>`` removes one, recursively.

Every transport failure and error status is mapped into :mod:`._exceptions`; no ``httpx``
exception escapes. Arguments are checked against MLflow's rules *before* any request is sent.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from ._checks import is_int
from ._config import ClientConfig, redact_url
from ._counting import CountQuery
from ._error_table import TransportKind, error_for, not_mlflow_answer, transport_error_for
from ._exceptions import (
    EngineClosedError,
    InvalidResponseError,
    MlflowApiError,
    TransportError,
    UsageError,
)
from ._quick_ack import network_transport
from ._requests import (
    MAX_SEARCH_PAGE,
    check_artifact_path,
    check_experiment_id,
    count_body,
    delete_body,
    search_body,
)
from ._wire import (
    ArtifactFile,
    Experiment,
    TracePage,
    TraceSummary,
    artifact_files,
    count_from,
    error_body,
    excerpt,
    experiment_from,
    experiments_from,
    iter_pages,
    parse_retry_after,
    parse_rfc3339_millis,
    trace_info_ids,
    trace_summary,
)

__all__ = [
    "Experiment",
    "TracePage",
    "TraceSummary",
    "TracesClient",
    "iter_pages",
    "parse_retry_after",
    "parse_rfc3339_millis",
]

DELETE_PATH = "/api/2.0/mlflow/traces/delete-traces"
SEARCH_PATH = "/api/3.0/mlflow/traces/search"
METRICS_PATH = "/api/3.0/mlflow/traces/metrics"
GET_EXPERIMENT_PATH = "/api/2.0/mlflow/experiments/get"
GET_EXPERIMENT_BY_NAME_PATH = "/api/2.0/mlflow/experiments/get-by-name"
SEARCH_EXPERIMENTS_PATH = "/api/2.0/mlflow/experiments/search"
TRACE_INFOS_PATH = "/api/3.0/mlflow/traces/batchGetInfos"
ARTIFACTS_PATH = "/api/2.0/mlflow-artifacts/artifacts"

# What no HTTP answer means, most specific first (httpx's own HTTPCORE_EXC_MAP, one level up):
# a request that never left cannot have done anything; one sent and unanswered may have. The
# exception each kind becomes, and its words, are in the error table (transport_error_for).
_TRANSPORT_KINDS: tuple[tuple[type[httpx.HTTPError], TransportKind], ...] = (
    (httpx.ConnectError, "connect"),
    (httpx.ConnectTimeout, "connect"),
    (httpx.PoolTimeout, "pool"),
    (httpx.TimeoutException, "timeout"),
    (httpx.HTTPError, "other"),
)
# Endpoints an older MLflow lacks (the callers fall back on a 404): a 404 there is not a sign
# that the server is not MLflow at all.
_OPTIONAL_ENDPOINTS = (METRICS_PATH, TRACE_INFOS_PATH, ARTIFACTS_PATH)
_JSON_TYPES = ("application/json", "text/json")

_T = TypeVar("_T")

try:
    _VERSION = version("async-trace-delete")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = "0+unknown"


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
        self._server = redact_url(self._config.base_url)
        self._answered = False

    def __repr__(self) -> str:
        scheme = self._config.auth_scheme or "none"
        return f"TracesClient(tracking_uri={self._config.tracking_uri!r}, auth={scheme})"

    @property
    def answered(self) -> bool:
        """Whether the server has answered any request of this client (any HTTP status)."""
        return self._answered

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
        verify = _build_verify(config)
        transport = self._transport or network_transport(verify=verify)
        self._http = httpx.AsyncClient(
            base_url=config.base_url,
            auth=_build_auth(config),
            verify=verify,
            timeout=timeout,
            transport=transport,
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
        body, batch_size = delete_body(
            experiment_id,
            max_timestamp_millis=max_timestamp_millis,
            max_traces=max_traces,
            trace_ids=trace_ids,
        )
        payload = await self._call(
            "POST",
            DELETE_PATH,
            json_body=body,
            experiment_id=experiment_id,
            batch_size=batch_size,
            request_timeout=request_timeout,
        )
        deleted = payload.get("traces_deleted", 0)  # proto3 JSON may omit a zero
        if not is_int(deleted) or deleted < 0:
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
        body = search_body(
            experiment_id,
            filter_string=filter_string,
            max_results=max_results,
            order_by=order_by,
            page_token=page_token,
        )
        payload = await self._call("POST", SEARCH_PATH, json_body=body, experiment_id=experiment_id)
        traces = _parsed(
            lambda: tuple(trace_summary(item) for item in payload.get("traces", [])),
            "search answered an unexpected trace shape",
            SEARCH_PATH,
            experiment_id,
        )
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

    async def query_count(self, query: CountQuery) -> int:
        """Count exactly what ``query`` selects, in one ``traces/metrics`` request.

        Raises:
            NotFoundError: the server has no metrics endpoint (before MLflow 3.x) or no
                such experiment.
            InvalidParameterError: the server does not take the query's filters.
        """
        body = count_body(query)
        payload = await self._call(
            "POST", METRICS_PATH, json_body=body, experiment_id=query.experiment_id
        )
        return _parsed(
            lambda: count_from(payload),
            "traces/metrics answered an unexpected count",
            METRICS_PATH,
            query.experiment_id,
        )

    async def count_traces(self, experiment_id: str, *, filter_string: str | None = None) -> int:
        """Count the traces matching a filter, exactly (pages through all of them)."""
        count = 0
        async for _ in self.iter_traces(experiment_id, filter_string=filter_string):
            count += 1
        return count

    async def get_experiment(self, experiment_id: str) -> Experiment:
        """Look an experiment up by ID. Raises :class:`NotFoundError` if it does not exist."""
        check_experiment_id(experiment_id)
        payload = await self._call(
            "GET",
            GET_EXPERIMENT_PATH,
            params={"experiment_id": experiment_id},
            experiment_id=experiment_id,
        )
        return experiment_from(payload, GET_EXPERIMENT_PATH)

    async def get_experiment_by_name(self, name: str) -> Experiment:
        """Look an experiment up by name. Raises :class:`NotFoundError` if none has it."""
        if not isinstance(name, str) or not name.strip():
            raise UsageError("experiment name must be a non-empty string")
        payload = await self._call(
            "GET", GET_EXPERIMENT_BY_NAME_PATH, params={"experiment_name": name}
        )
        return experiment_from(payload, GET_EXPERIMENT_BY_NAME_PATH)

    async def search_experiments(
        self,
        *,
        filter_string: str | None = None,
        max_results: int = 1000,
        page_token: str | None = None,
        view_type: str = "ACTIVE_ONLY",
    ) -> tuple[tuple[Experiment, ...], str | None]:
        """One page of experiments (``experiments/search``) and the next page's token."""
        body: dict[str, Any] = {"max_results": max_results, "view_type": view_type}
        if filter_string:
            body["filter"] = filter_string
        if page_token:
            body["page_token"] = page_token
        payload = await self._call("POST", SEARCH_EXPERIMENTS_PATH, json_body=body)
        return experiments_from(payload, SEARCH_EXPERIMENTS_PATH)

    async def existing_trace_ids(self, trace_ids: Sequence[str]) -> frozenset[str]:
        """Which of ``trace_ids`` exist on the server, in any experiment (one request).

        Raises:
            NotFoundError: the server has no ``batchGetInfos`` endpoint (before 3.x).
            InvalidResponseError: the answer names a trace that was not asked for.
        """
        payload = await self._call(
            "POST", TRACE_INFOS_PATH, json_body={"trace_ids": list(trace_ids)}
        )
        found = _parsed(
            lambda: trace_info_ids(payload),
            "batchGetInfos answered an unexpected shape",
            TRACE_INFOS_PATH,
        )
        if not found <= set(trace_ids):
            raise InvalidResponseError(
                "batchGetInfos answered traces that were not asked for (not MLflow's answer?)",
                status_code=200,
                endpoint=TRACE_INFOS_PATH,
                outcome_unknown=False,
            )
        return found

    async def list_artifacts(self, path: str) -> tuple[ArtifactFile, ...]:
        """List one folder of the server's artifact store (``path`` relative to its root);
        a missing folder lists as empty."""
        payload = await self._call("GET", ARTIFACTS_PATH, params={"path": path})
        return _parsed(
            lambda: artifact_files(payload),
            "the artifact listing has an unexpected shape",
            ARTIFACTS_PATH,
        )

    async def delete_artifacts(self, path: str, *, request_timeout: float | None = None) -> None:
        """Remove a file or folder (recursively) from the server's artifact store; a missing
        path is no error (the server answers 200)."""
        check_artifact_path(path)
        await self._call(
            "DELETE",
            f"{ARTIFACTS_PATH}/{quote(path, safe='/')}",
            request_timeout=request_timeout,
        )

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
        except httpx.HTTPError as error:
            failure = self._transport_error(error, context)
        if failure is not None:
            raise failure
        self._answered = True
        if response.is_success:
            try:
                payload = response.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                if not _json_content(response):  # a web page (a login page), not MLflow's
                    raise not_mlflow_answer(
                        response.status_code,
                        response.headers,
                        self._scrub(excerpt(response.text)),
                        server=self._server,
                        # A page answering a delete: what was forwarded behind it is unknown.
                        outcome_unknown=method != "GET",
                        **context,
                    ) from None
                raise InvalidResponseError(
                    f"the server answered {response.status_code} with a body that is not JSON: "
                    f"{self._scrub(excerpt(response.text))!r}",
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

    def _transport_error(
        self, error: httpx.HTTPError, context: Mapping[str, Any]
    ) -> TransportError:
        for httpx_type, kind in _TRANSPORT_KINDS:
            if isinstance(error, httpx_type):
                text = self._scrub(str(error))
                detail = f"{type(error).__name__}: {text}" if text else type(error).__name__
                return transport_error_for(
                    kind, error, server=self._server, detail=detail, **context
                )
        raise AssertionError("unreachable: httpx.HTTPError is the last row")  # pragma: no cover

    def _scrub(self, text: str) -> str:
        """Remove our own credentials from text the server sent back (a gateway may echo
        the Authorization header)."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _error_for(self, response: httpx.Response, context: Mapping[str, Any]) -> MlflowApiError:
        body = error_body(response.text)
        return error_for(
            response.status_code,
            body.error_code,
            None if body.message is None else self._scrub(body.message),
            response.headers,
            text=self._scrub(body.text),
            now=self._clock(),
            server=self._server,
            endpoint_optional=str(context.get("endpoint", "")).startswith(_OPTIONAL_ENDPOINTS),
            **context,
        )


def _json_content(response: httpx.Response) -> bool:
    """Whether a 2xx answer that is not JSON was meant to be (a truncated answer: retried):
    its content type says JSON, or it says nothing. A page (``text/html``, ``text/plain``) is
    not MLflow's at all."""
    content_type = response.headers.get("Content-Type")
    if not content_type:
        return True
    media = content_type.partition(";")[0].strip().lower()
    return media in _JSON_TYPES or media.endswith("+json")


def _parsed(
    parse: Callable[[], _T], what: str, endpoint: str, experiment_id: str | None = None
) -> _T:
    """``parse()`` of a 2xx answer, or the :class:`InvalidResponseError` saying ``what`` was
    wrong with it (certain: the server answered, our reading of it failed)."""
    try:
        return parse()
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidResponseError(
            f"{what}: {error}",
            status_code=200,
            endpoint=endpoint,
            experiment_id=experiment_id,
            outcome_unknown=False,
        ) from None


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
