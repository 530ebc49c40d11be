"""Unit tests of TracesClient: request shapes, local validation, error mapping, auth.

No network and no sleeping: every test talks to an ``httpx.MockTransport``.
"""

from __future__ import annotations

import base64
import calendar
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_trace_delete import (
    AuthenticationError,
    BatchTooLargeError,
    ClientConfig,
    ConnectError,
    EngineClosedError,
    Experiment,
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
    TracePage,
    TracesClient,
    TraceSummary,
    TransportError,
    UsageError,
)
from async_trace_delete._client import (
    DELETE_PATH,
    GET_EXPERIMENT_BY_NAME_PATH,
    GET_EXPERIMENT_PATH,
    SEARCH_PATH,
    parse_retry_after,
    parse_rfc3339_millis,
)

BASE_URL = "http://mlflow.test:5000"
TOKEN = "tok-SECRET-9f8e7d"
USERNAME = "alice"
PASSWORD = "pw-SECRET-1a2b3c"
BASIC_VALUE = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode("ascii")
SECRETS = (TOKEN, PASSWORD, BASIC_VALUE)
# 2025-01-01T00:00:00Z: "now" for Retry-After HTTP dates.
FIXED_NOW = float(calendar.timegm((2025, 1, 1, 0, 0, 0)))

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that remembers every request it saw."""

    def __init__(self, respond: Handler) -> None:
        self.requests: list[httpx.Request] = []
        self._respond = respond

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._respond(request)

    def bodies(self) -> list[Any]:
        return [json.loads(request.content) for request in self.requests]


def answer(status: int = 200, payload: Any = None, **kwargs: Any) -> Handler:
    """A handler that always answers ``status`` with a JSON ``payload``."""

    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=payload if payload is not None else {}, **kwargs)

    return respond


def raising(error_type: type[httpx.HTTPError]) -> Handler:
    """A handler that fails the way the network does."""

    def respond(request: httpx.Request) -> httpx.Response:
        if issubclass(error_type, httpx.RequestError):
            raise error_type("simulated failure", request=request)
        raise error_type("simulated failure")  # pragma: no cover - all cases are RequestError

    return respond


def make_client(
    handler: Callable[[httpx.Request], httpx.Response],
    *,
    config: ClientConfig | None = None,
    clock: Callable[[], float] = lambda: FIXED_NOW,
) -> TracesClient:
    return TracesClient(
        config if config is not None else ClientConfig(tracking_uri=BASE_URL),
        transport=httpx.MockTransport(handler),
        clock=clock,
    )


def utc_millis(*parts: int) -> int:
    return calendar.timegm((*parts, 0, 0, 0)[:6]) * 1000


def trace_item(trace_id: str, request_time: str, state: str = "OK") -> dict[str, Any]:
    return {
        "trace_id": trace_id,
        "request_time": request_time,
        "execution_duration": "0.010s",
        "state": state,
        "tags": {"mlflow.traceName": "t"},
        "trace_metadata": {},
    }


def assert_no_httpx_leak(error: BaseException) -> None:
    """Our error is not an httpx one, and the httpx chain is hidden from tracebacks."""
    assert not isinstance(error, httpx.HTTPError)
    assert error.__cause__ is None
    if error.__context__ is not None:
        assert error.__suppress_context__


# -- request shapes ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_delete_by_cutoff_sends_exactly_the_three_fields() -> None:
    """A cutoff delete posts experiment_id, max_timestamp_millis and max_traces as JSON."""
    recorder = Recorder(answer(200, {"traces_deleted": 5}))
    async with make_client(recorder) as client:
        deleted = await client.delete_traces("1", max_timestamp_millis=1_700_000, max_traces=5)
    assert deleted == 5
    (request,) = recorder.requests
    assert request.method == "POST"
    assert request.url == f"{BASE_URL}{DELETE_PATH}"
    assert request.url.path == "/api/2.0/mlflow/traces/delete-traces"
    assert request.headers["Content-Type"] == "application/json"
    assert recorder.bodies() == [
        {"experiment_id": "1", "max_timestamp_millis": 1_700_000, "max_traces": 5}
    ]


@pytest.mark.asyncio
async def test_delete_by_cutoff_without_cap_omits_max_traces() -> None:
    """Without max_traces the body carries only the experiment and the cutoff."""
    recorder = Recorder(answer(200, {"traces_deleted": 3}))
    async with make_client(recorder) as client:
        assert await client.delete_traces("7", max_timestamp_millis=42) == 3
    assert recorder.bodies() == [{"experiment_id": "7", "max_timestamp_millis": 42}]


@pytest.mark.asyncio
async def test_delete_by_ids_sends_request_ids_never_max_traces() -> None:
    """An ID delete sends request_ids (the only ID field MLflow reads), never trace_ids."""
    recorder = Recorder(answer(200, {"traces_deleted": 2}))
    async with make_client(recorder) as client:
        assert await client.delete_traces("1", trace_ids=("tr-a", "tr-b", "tr-c")) == 2
    (body,) = recorder.bodies()
    assert body == {"experiment_id": "1", "request_ids": ["tr-a", "tr-b", "tr-c"]}
    assert "trace_ids" not in body
    assert "max_traces" not in body
    assert recorder.requests[0].headers["Content-Type"] == "application/json"


@pytest.mark.asyncio
async def test_missing_traces_deleted_means_zero() -> None:
    """proto3 JSON omits a zero count: an empty answer means nothing was deleted."""
    async with make_client(Recorder(answer(200, {}))) as client:
        assert await client.delete_traces("1", max_timestamp_millis=10) == 0


@pytest.mark.parametrize("bad_count", [-1, "5", 2.5, True, None, [1], {"n": 1}])
@pytest.mark.asyncio
async def test_bad_traces_deleted_is_an_invalid_response(bad_count: object) -> None:
    """A negative or non-integer traces_deleted is an InvalidResponseError with context."""
    async with make_client(Recorder(answer(200, {"traces_deleted": bad_count}))) as client:
        with pytest.raises(InvalidResponseError) as caught:
            await client.delete_traces("3", max_timestamp_millis=10, max_traces=4)
    error = caught.value
    assert error.status_code == 200
    assert error.endpoint == DELETE_PATH
    assert error.experiment_id == "3"
    assert error.batch_size == 4


@pytest.mark.asyncio
async def test_search_sends_locations_filter_order_and_page_token() -> None:
    """Search posts the v3 body: locations, filter, max_results, order_by, page_token."""
    recorder = Recorder(answer(200, {"traces": []}))
    async with make_client(recorder) as client:
        page = await client.search_traces(
            "12",
            filter_string="status = 'ERROR'",
            max_results=50,
            order_by=["timestamp_ms DESC"],
            page_token="100",
        )
    assert page == TracePage(traces=(), next_page_token=None)
    (request,) = recorder.requests
    assert request.method == "POST"
    assert request.url.path == SEARCH_PATH == "/api/3.0/mlflow/traces/search"
    assert request.headers["Content-Type"] == "application/json"
    assert recorder.bodies() == [
        {
            "locations": [
                {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "12"}}
            ],
            "filter": "status = 'ERROR'",
            "max_results": 50,
            "order_by": ["timestamp_ms DESC"],
            "page_token": "100",
        }
    ]


@pytest.mark.asyncio
async def test_search_defaults_oldest_first_without_filter_or_token() -> None:
    """By default search asks for 500 traces, oldest first, and sends no filter or token."""
    recorder = Recorder(answer(200, {}))
    async with make_client(recorder) as client:
        await client.search_traces("1")
    (body,) = recorder.bodies()
    assert body["max_results"] == 500
    assert body["order_by"] == ["timestamp_ms ASC"]
    assert "filter" not in body
    assert "page_token" not in body


@pytest.mark.parametrize(
    ("request_time", "expected_ms"),
    [
        ("2024-03-04T05:06:07Z", utc_millis(2024, 3, 4, 5, 6, 7)),
        ("2024-03-04T05:06:07.123Z", utc_millis(2024, 3, 4, 5, 6, 7) + 123),
        ("2024-03-04T05:06:07.999999Z", utc_millis(2024, 3, 4, 5, 6, 7) + 999),
        ("2024-03-04T05:06:07.001999999Z", utc_millis(2024, 3, 4, 5, 6, 7) + 1),
        ("2024-03-04T05:06:07.5Z", utc_millis(2024, 3, 4, 5, 6, 7) + 500),
        ("2024-03-04T07:06:07.250+02:00", utc_millis(2024, 3, 4, 5, 6, 7) + 250),
        ("1970-01-01T00:00:00.001Z", 1),
    ],
)
@pytest.mark.asyncio
async def test_search_parses_request_time_to_exact_millis(
    request_time: str, expected_ms: int
) -> None:
    """request_time becomes exact epoch milliseconds whatever the fractional digits."""
    payload = {"traces": [trace_item("tr-1", request_time, "ERROR")], "next_page_token": "x"}
    async with make_client(Recorder(answer(200, payload))) as client:
        page = await client.search_traces("1")
    assert page.traces == (TraceSummary("tr-1", expected_ms, "ERROR"),)
    assert page.next_page_token == "x"


@pytest.mark.parametrize(
    "bad_item",
    [
        {"request_time": "2024-01-01T00:00:00Z"},
        {"trace_id": 5, "request_time": "2024-01-01T00:00:00Z"},
        {"trace_id": "tr-1"},
        {"trace_id": "tr-1", "request_time": "yesterday"},
        {"trace_id": "tr-1", "request_time": "2024-01-01T00:00:00"},
        "tr-1",
    ],
)
@pytest.mark.asyncio
async def test_search_with_unexpected_trace_shape_is_an_invalid_response(bad_item: Any) -> None:
    """A trace without ID or readable request_time is an InvalidResponseError."""
    async with make_client(Recorder(answer(200, {"traces": [bad_item]}))) as client:
        with pytest.raises(InvalidResponseError) as caught:
            await client.search_traces("4")
    assert caught.value.endpoint == SEARCH_PATH
    assert caught.value.experiment_id == "4"
    assert_no_httpx_leak(caught.value)


@pytest.mark.parametrize("request_time", [1_700_000_000, None])
@pytest.mark.asyncio
async def test_search_with_non_string_request_time_is_an_invalid_response(
    request_time: object,
) -> None:
    """A numeric or null request_time is an InvalidResponseError, not an AttributeError."""
    payload = {"traces": [{"trace_id": "tr-1", "request_time": request_time}]}
    async with make_client(Recorder(answer(200, payload))) as client:
        with pytest.raises(InvalidResponseError):
            await client.search_traces("1")


def paged_search(pages: list[dict[str, Any]]) -> Recorder:
    """Answer search calls from ``pages`` in order."""
    remaining = list(pages)

    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=remaining.pop(0))

    return Recorder(respond)


@pytest.mark.asyncio
async def test_iter_traces_follows_page_tokens_and_stops() -> None:
    """iter_traces passes each next_page_token on and stops when there is none."""
    recorder = paged_search(
        [
            {
                "traces": [trace_item("a", "1970-01-01T00:00:00.001Z")],
                "next_page_token": "1",
            },
            {
                "traces": [trace_item("b", "1970-01-01T00:00:00.002Z")],
                "next_page_token": "2",
            },
            {"traces": [trace_item("c", "1970-01-01T00:00:00.003Z")]},
        ]
    )
    async with make_client(recorder) as client:
        seen = [trace async for trace in client.iter_traces("1", page_size=1)]
    assert [(trace.trace_id, trace.timestamp_ms) for trace in seen] == [
        ("a", 1),
        ("b", 2),
        ("c", 3),
    ]
    assert [body.get("page_token") for body in recorder.bodies()] == [None, "1", "2"]
    assert {body["max_results"] for body in recorder.bodies()} == {1}


@pytest.mark.asyncio
async def test_iter_traces_stops_on_an_empty_page_even_with_a_token() -> None:
    """An empty page ends iteration even if the server still sends a token (no endless loop)."""
    recorder = paged_search([{"traces": [], "next_page_token": "500"}])
    async with make_client(recorder) as client:
        seen = [trace async for trace in client.iter_traces("1")]
    assert seen == []
    assert len(recorder.requests) == 1


@pytest.mark.asyncio
async def test_count_traces_counts_every_page_with_the_filter() -> None:
    """count_traces sums all pages and sends the filter on each call."""
    stamp = "2024-01-01T00:00:00Z"
    recorder = paged_search(
        [
            {"traces": [trace_item(f"p1-{i}", stamp) for i in range(3)], "next_page_token": "3"},
            {"traces": [trace_item(f"p2-{i}", stamp) for i in range(2)], "next_page_token": ""},
        ]
    )
    async with make_client(recorder) as client:
        assert await client.count_traces("9", filter_string="status = 'OK'") == 5
    assert [body["filter"] for body in recorder.bodies()] == ["status = 'OK'"] * 2


@pytest.mark.asyncio
async def test_get_experiment_sends_the_id_as_a_query_parameter() -> None:
    """get_experiment GETs experiments/get?experiment_id=... and parses the answer."""
    recorder = Recorder(
        answer(
            200,
            {"experiment": {"experiment_id": "5", "name": "exp", "lifecycle_stage": "active"}},
        )
    )
    async with make_client(recorder) as client:
        experiment = await client.get_experiment("5")
    assert experiment == Experiment(experiment_id="5", name="exp", lifecycle_stage="active")
    (request,) = recorder.requests
    assert request.method == "GET"
    assert request.url.path == GET_EXPERIMENT_PATH
    assert dict(request.url.params) == {"experiment_id": "5"}
    assert request.content == b""


@pytest.mark.asyncio
async def test_get_experiment_by_name_sends_the_name_as_a_query_parameter() -> None:
    """get_experiment_by_name GETs get-by-name?experiment_name=... (URL-encoded)."""
    recorder = Recorder(
        answer(
            200,
            {"experiment": {"experiment_id": "8", "name": "a b/ü", "lifecycle_stage": "deleted"}},
        )
    )
    async with make_client(recorder) as client:
        experiment = await client.get_experiment_by_name("a b/ü")
    assert experiment == Experiment(experiment_id="8", name="a b/ü", lifecycle_stage="deleted")
    (request,) = recorder.requests
    assert request.method == "GET"
    assert request.url.path == GET_EXPERIMENT_BY_NAME_PATH
    assert dict(request.url.params) == {"experiment_name": "a b/ü"}


@pytest.mark.parametrize(
    ("call", "endpoint"),
    [
        ("by_id", GET_EXPERIMENT_PATH),
        ("by_name", GET_EXPERIMENT_BY_NAME_PATH),
    ],
)
@pytest.mark.asyncio
async def test_unknown_experiment_is_not_found(call: str, endpoint: str) -> None:
    """MLflow's 404 RESOURCE_DOES_NOT_EXIST for an experiment becomes NotFoundError."""
    message = "Could not find experiment with ID 99"
    recorder = Recorder(answer(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": message}))
    async with make_client(recorder) as client:
        lookup = (
            client.get_experiment("99") if call == "by_id" else client.get_experiment_by_name("x")
        )
        with pytest.raises(NotFoundError) as caught:
            await lookup
    error = caught.value
    assert error.status_code == 404
    assert error.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert error.message == message
    assert error.endpoint == endpoint


@pytest.mark.asyncio
async def test_experiment_with_unexpected_shape_is_an_invalid_response() -> None:
    """An experiment answer without an experiment object is an InvalidResponseError."""
    async with make_client(Recorder(answer(200, {"experiment": None}))) as client:
        with pytest.raises(InvalidResponseError) as caught:
            await client.get_experiment("1")
    assert caught.value.endpoint == GET_EXPERIMENT_PATH


# -- local validation: UsageError and no HTTP call -------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({}, id="neither-cutoff-nor-ids"),
        pytest.param({"max_timestamp_millis": 10, "trace_ids": ["tr-1"]}, id="both"),
        pytest.param({"max_timestamp_millis": 0}, id="cutoff-zero"),
        pytest.param({"max_timestamp_millis": -5}, id="cutoff-negative"),
        pytest.param({"max_timestamp_millis": 10.0}, id="cutoff-float"),
        pytest.param({"max_timestamp_millis": True}, id="cutoff-bool"),
        pytest.param({"max_timestamp_millis": "10"}, id="cutoff-string"),
        pytest.param({"max_timestamp_millis": 10, "max_traces": 0}, id="max-traces-zero"),
        pytest.param({"max_timestamp_millis": 10, "max_traces": -1}, id="max-traces-negative"),
        pytest.param({"max_timestamp_millis": 10, "max_traces": 2.0}, id="max-traces-float"),
        pytest.param({"max_timestamp_millis": 10, "max_traces": True}, id="max-traces-bool"),
        pytest.param({"max_traces": 5}, id="max-traces-alone"),
        pytest.param({"trace_ids": ["tr-1"], "max_traces": 1}, id="max-traces-with-ids"),
        pytest.param({"trace_ids": []}, id="empty-ids"),
        pytest.param({"trace_ids": ()}, id="empty-id-tuple"),
        pytest.param({"trace_ids": "tr-123"}, id="ids-as-a-string"),
        pytest.param({"trace_ids": ["tr-1", ""]}, id="an-empty-id"),
        pytest.param({"trace_ids": ["tr-1", 5]}, id="a-non-string-id"),
    ],
)
@pytest.mark.asyncio
async def test_delete_breaking_mlflow_rules_is_refused_locally(kwargs: dict[str, Any]) -> None:
    """Arguments MLflow would reject raise UsageError before any request is sent."""
    recorder = Recorder(answer(200, {"traces_deleted": 1}))
    async with make_client(recorder) as client:
        with pytest.raises(UsageError):
            await client.delete_traces("1", **kwargs)
    assert recorder.requests == []


@pytest.mark.parametrize("experiment_id", ["", "   ", None, 5])
@pytest.mark.asyncio
async def test_empty_experiment_id_is_refused_locally(experiment_id: Any) -> None:
    """Every call checks the experiment ID before sending anything."""
    recorder = Recorder(answer(200, {}))
    async with make_client(recorder) as client:
        with pytest.raises(UsageError, match="experiment_id"):
            await client.delete_traces(experiment_id, max_timestamp_millis=10)
        with pytest.raises(UsageError, match="experiment_id"):
            await client.search_traces(experiment_id)
        with pytest.raises(UsageError, match="experiment_id"):
            await client.get_experiment(experiment_id)
    assert recorder.requests == []


@pytest.mark.parametrize("max_results", [0, -1, 501, 10_000, 2.0, True])
@pytest.mark.asyncio
async def test_search_page_size_out_of_range_is_refused_locally(max_results: Any) -> None:
    """max_results must be an integer in 1..500 (MLflow rejects more than 500)."""
    recorder = Recorder(answer(200, {}))
    async with make_client(recorder) as client:
        with pytest.raises(UsageError, match="max_results"):
            await client.search_traces("1", max_results=max_results)
    assert recorder.requests == []


@pytest.mark.parametrize("max_results", [1, 500])
@pytest.mark.asyncio
async def test_search_page_size_bounds_are_accepted(max_results: int) -> None:
    """1 and 500 are valid page sizes."""
    recorder = Recorder(answer(200, {}))
    async with make_client(recorder) as client:
        await client.search_traces("1", max_results=max_results)
    assert recorder.bodies()[0]["max_results"] == max_results


@pytest.mark.parametrize("name", ["", "  "])
@pytest.mark.asyncio
async def test_empty_experiment_name_is_refused_locally(name: str) -> None:
    """get_experiment_by_name needs a non-empty name."""
    recorder = Recorder(answer(200, {}))
    async with make_client(recorder) as client:
        with pytest.raises(UsageError):
            await client.get_experiment_by_name(name)
    assert recorder.requests == []


# -- error mapping -------------------------------------------------------------------------


def mlflow_error(status: int, error_code: str, message: str, **kwargs: Any) -> httpx.Response:
    return httpx.Response(status, json={"error_code": error_code, "message": message}, **kwargs)


ErrorCase = tuple[httpx.Response, type[MlflowApiError], str | None, bool, float | None, str]

ERROR_CASES: dict[str, ErrorCase] = {
    # id: (response, exact type, error_code, outcome_unknown, retry_after, text in message)
    "400-invalid-parameter": (
        mlflow_error(
            400,
            "INVALID_PARAMETER_VALUE",
            "Invalid value 'abc' for parameter 'experiment_id' supplied.",
        ),
        InvalidParameterError,
        "INVALID_PARAMETER_VALUE",
        False,
        None,
        "Invalid value 'abc' for parameter 'experiment_id' supplied.",
    ),
    "404-plain": (
        httpx.Response(404, text="<html>Not Found</html>"),
        NotFoundError,
        None,
        False,
        None,
        "Not Found",
    ),
    "400-resource-does-not-exist": (
        mlflow_error(400, "RESOURCE_DOES_NOT_EXIST", "No experiment 'x'"),
        NotFoundError,
        "RESOURCE_DOES_NOT_EXIST",
        False,
        None,
        "No experiment 'x'",
    ),
    "401-basic-auth-html": (
        httpx.Response(
            401,
            text="You are not authenticated. Please see "
            "https://www.mlflow.org/docs/latest/auth/index.html",
            headers={"WWW-Authenticate": 'Basic realm="mlflow"', "Content-Type": "text/html"},
        ),
        AuthenticationError,
        None,
        False,
        None,
        "You are not authenticated",
    ),
    "403-plain-text": (
        httpx.Response(403, text="Permission denied", headers={"Content-Type": "text/plain"}),
        PermissionDeniedError,
        None,
        False,
        None,
        "Permission denied",
    ),
    "429-retry-after-seconds": (
        httpx.Response(429, text="slow down", headers={"Retry-After": "7"}),
        ThrottledError,
        None,
        False,
        7.0,
        "slow down",
    ),
    "429-retry-after-http-date": (
        httpx.Response(429, text="", headers={"Retry-After": "Wed, 01 Jan 2025 00:01:30 GMT"}),
        ThrottledError,
        None,
        False,
        90.0,
        "too many requests",
    ),
    "503-database-locked": (
        mlflow_error(
            503,
            "TEMPORARILY_UNAVAILABLE",
            "(sqlite3.OperationalError) database is locked",
            headers={"Retry-After": "2"},
        ),
        ServerUnavailableError,
        "TEMPORARILY_UNAVAILABLE",
        False,
        2.0,
        "database is locked",
    ),
    "503-too-many-sql-variables": (
        mlflow_error(
            503,
            "TEMPORARILY_UNAVAILABLE",
            "(sqlite3.OperationalError) too many SQL variables\n[SQL: DELETE FROM trace_info "
            "WHERE trace_info.request_id IN (" + "?, " * 2000 + "?)]",
        ),
        BatchTooLargeError,
        "TEMPORARILY_UNAVAILABLE",
        False,
        None,
        "too many SQL variables",
    ),
    "413-too-large": (
        httpx.Response(413, text="Request Entity Too Large"),
        BatchTooLargeError,
        None,
        False,
        None,
        "Request Entity Too Large",
    ),
    "500-internal": (
        mlflow_error(500, "INTERNAL_ERROR", "boom"),
        ServerError,
        "INTERNAL_ERROR",
        False,
        None,
        "boom",
    ),
    "502-bad-gateway": (
        httpx.Response(502, text="Bad Gateway"),
        ServerError,
        None,
        True,
        None,
        "Bad Gateway",
    ),
    "504-gateway-timeout": (
        httpx.Response(504, text="", headers={"Retry-After": "3"}),
        ServerError,
        None,
        True,
        3.0,
        "bad gateway",
    ),
    "200-not-json": (
        httpx.Response(200, text="<html>login page</html>"),
        InvalidResponseError,
        None,
        True,
        None,
        "not JSON",
    ),
    "200-truncated-json": (
        httpx.Response(
            200, content=b'{"traces_deleted": 1', headers={"Content-Type": "application/json"}
        ),
        InvalidResponseError,
        None,
        True,
        None,
        "not JSON",
    ),
    "200-empty-body": (
        httpx.Response(200, content=b""),
        InvalidResponseError,
        None,
        True,
        None,
        "not JSON",
    ),
    "200-invalid-utf8": (
        httpx.Response(200, content=b"\xff\xfe\xfa{", headers={"Content-Type": "application/json"}),
        InvalidResponseError,
        None,
        True,
        None,
        "not JSON",
    ),
    "200-json-array": (
        httpx.Response(200, json=[1, 2]),
        InvalidResponseError,
        None,
        True,
        None,
        "not an object",
    ),
}

TRANSPORT_CASES: dict[str, tuple[type[httpx.HTTPError], type[MlflowApiError], bool]] = {
    # id: (httpx error raised, exact type we raise, outcome_unknown)
    "connect-error": (httpx.ConnectError, ConnectError, False),
    "connect-timeout": (httpx.ConnectTimeout, ConnectError, False),
    "pool-timeout": (httpx.PoolTimeout, ConnectError, False),
    "read-timeout": (httpx.ReadTimeout, RequestTimeoutError, True),
    "write-timeout": (httpx.WriteTimeout, RequestTimeoutError, True),
    "remote-protocol-error": (httpx.RemoteProtocolError, TransportError, True),
    "read-error": (httpx.ReadError, TransportError, True),
    "write-error": (httpx.WriteError, TransportError, True),
}


def replay(response: httpx.Response) -> Handler:
    """A handler answering a fresh copy of ``response`` on each call."""

    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            response.status_code, headers=response.headers, content=response.content
        )

    return respond


@pytest.mark.parametrize("case", list(ERROR_CASES), ids=list(ERROR_CASES))
@pytest.mark.asyncio
async def test_status_errors_map_to_our_exceptions(case: str) -> None:
    """Each error status (and unreadable 2xx) maps to one exception with its full context."""
    response, error_type, error_code, outcome_unknown, retry_after, text = ERROR_CASES[case]
    async with make_client(Recorder(replay(response))) as client:
        with pytest.raises(MlflowApiError) as caught:
            await client.delete_traces("17", max_timestamp_millis=1_000, max_traces=250)
    error = caught.value
    assert type(error) is error_type
    assert error.status_code == response.status_code
    assert error.error_code == error_code
    assert error.outcome_unknown is outcome_unknown
    assert error.retry_after == retry_after
    assert text in error.message
    assert error.experiment_id == "17"
    assert error.batch_size == 250
    assert error.endpoint == DELETE_PATH
    assert_no_httpx_leak(error)


@pytest.mark.asyncio
async def test_invalid_parameter_keeps_mlflow_message_verbatim() -> None:
    """A 400 INVALID_PARAMETER_VALUE keeps MLflow's message as the error's message."""
    message = "Either `max_timestamp_millis` or `trace_ids` must be specified."
    recorder = Recorder(replay(mlflow_error(400, "INVALID_PARAMETER_VALUE", message)))
    async with make_client(recorder) as client:
        with pytest.raises(InvalidParameterError) as caught:
            await client.delete_traces("1", trace_ids=["a", "b"])
    assert caught.value.message == message
    assert message in str(caught.value)
    assert caught.value.batch_size == 2


def test_too_many_sql_variables_is_not_a_server_unavailable_error() -> None:
    """The permanent 503 must not be caught by handlers of the transient one."""
    assert not issubclass(BatchTooLargeError, ServerUnavailableError)


@pytest.mark.asyncio
async def test_huge_error_body_is_excerpted() -> None:
    """A ~1 MB error body does not end up whole in the message."""
    huge = "(sqlite3.OperationalError) too many SQL variables " + "?, " * 300_000
    recorder = Recorder(replay(mlflow_error(503, "TEMPORARILY_UNAVAILABLE", huge)))
    async with make_client(recorder) as client:
        with pytest.raises(BatchTooLargeError) as caught:
            await client.delete_traces("1", max_timestamp_millis=5)
    assert len(str(caught.value)) < 1_000


@pytest.mark.parametrize("case", list(TRANSPORT_CASES), ids=list(TRANSPORT_CASES))
@pytest.mark.asyncio
async def test_transport_failures_map_to_our_exceptions(case: str) -> None:
    """Connection failures and timeouts map to our TransportError family; no httpx escapes."""
    httpx_error, error_type, outcome_unknown = TRANSPORT_CASES[case]
    async with make_client(Recorder(raising(httpx_error))) as client:
        with pytest.raises(MlflowApiError) as caught:
            await client.delete_traces("2", trace_ids=["tr-1", "tr-2", "tr-3"])
    error = caught.value
    assert type(error) is error_type
    assert isinstance(error, TransportError)
    assert error.outcome_unknown is outcome_unknown
    assert error.status_code is None
    assert error.error_code is None
    assert error.experiment_id == "2"
    assert error.batch_size == 3
    assert error.endpoint == DELETE_PATH
    assert_no_httpx_leak(error)


@pytest.mark.asyncio
async def test_search_errors_carry_the_search_endpoint() -> None:
    """Errors of a search call name the search endpoint and no batch size."""
    async with make_client(Recorder(raising(httpx.ReadTimeout))) as client:
        with pytest.raises(RequestTimeoutError) as caught:
            await client.search_traces("6")
    assert caught.value.endpoint == SEARCH_PATH
    assert caught.value.experiment_id == "6"
    assert caught.value.batch_size is None


def test_retry_after_http_date_uses_the_injected_clock() -> None:
    """The client reads "now" from its clock, so an HTTP-date Retry-After is exact."""
    response = httpx.Response(429, headers={"Retry-After": "Wed, 01 Jan 2025 00:00:07 GMT"})
    client = make_client(Recorder(replay(response)), clock=lambda: FIXED_NOW)
    error = client._error_for(response, {"endpoint": DELETE_PATH})
    assert isinstance(error, ThrottledError)
    assert error.retry_after == 7.0
    later = make_client(Recorder(replay(response)), clock=lambda: FIXED_NOW + 10)
    assert later._error_for(response, {}).retry_after == 0.0


# -- authentication and secrets -------------------------------------------------------------


async def authorization_sent(config: ClientConfig) -> str | None:
    """Make one call with ``config`` and return the Authorization header it sent."""
    recorder = Recorder(answer(200, {"traces_deleted": 0}))
    async with make_client(recorder, config=config) as client:
        await client.delete_traces("1", max_timestamp_millis=1)
    header: str | None = recorder.requests[0].headers.get("Authorization")
    return header


@pytest.mark.asyncio
async def test_bearer_token_is_sent() -> None:
    """A token becomes ``Authorization: Bearer <token>``."""
    config = ClientConfig(tracking_uri=BASE_URL, token=TOKEN)
    assert config.auth_scheme == "bearer"
    assert await authorization_sent(config) == f"Bearer {TOKEN}"


@pytest.mark.asyncio
async def test_basic_credentials_are_sent() -> None:
    """Username and password become ``Authorization: Basic base64(user:password)``."""
    config = ClientConfig(tracking_uri=BASE_URL, username=USERNAME, password=PASSWORD)
    assert config.auth_scheme == "basic"
    assert await authorization_sent(config) == f"Basic {BASIC_VALUE}"


@pytest.mark.asyncio
async def test_basic_wins_over_bearer_as_in_mlflow() -> None:
    """With both, Basic is used, as MLflow's own client does."""
    config = ClientConfig(tracking_uri=BASE_URL, token=TOKEN, username=USERNAME, password=PASSWORD)
    assert config.auth_scheme == "basic"
    assert await authorization_sent(config) == f"Basic {BASIC_VALUE}"


@pytest.mark.asyncio
async def test_no_credentials_no_authorization_header() -> None:
    """Without credentials nothing is sent; the User-Agent names the library."""
    recorder = Recorder(answer(200, {}))
    async with make_client(recorder) as client:
        await client.search_traces("1")
    (request,) = recorder.requests
    assert "Authorization" not in request.headers
    assert request.headers["User-Agent"].startswith("async-trace-delete/")


def all_secrets_config() -> ClientConfig:
    return ClientConfig(tracking_uri=BASE_URL, token=TOKEN, username=USERNAME, password=PASSWORD)


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_secrets_stay_out_of_reprs_and_dumps() -> None:
    """repr/str of the client and config, and the config dump, never show a secret."""
    for config in (
        all_secrets_config(),
        ClientConfig(tracking_uri=BASE_URL, token=TOKEN),
    ):
        client = make_client(Recorder(answer()), config=config)
        assert_no_secret(repr(client))
        assert_no_secret(repr(config))
        assert_no_secret(str(config))
        assert_no_secret(str(config.model_dump()))
        assert_no_secret(config.model_dump_json())
        assert_no_secret(repr(client.config))


async def error_texts_of_every_call(client: TracesClient) -> list[str]:
    """Make each kind of call and return the str/repr/message of every MlflowApiError."""
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: client.delete_traces("1", max_timestamp_millis=5, max_traces=3),
        lambda: client.delete_traces("1", trace_ids=["tr-1"]),
        lambda: client.search_traces("1"),
        lambda: client.get_experiment("1"),
        lambda: client.get_experiment_by_name("n"),
    ]
    texts: list[str] = []
    for call in calls:
        try:
            await call()
        except MlflowApiError as error:
            texts.extend([str(error), repr(error), error.message])
    assert texts, "every handler of the sweep makes at least one call fail"
    return texts


@pytest.mark.asyncio
async def test_secrets_never_appear_in_any_error_text() -> None:
    """Sweep every error path with credentials set: no error text contains a secret."""
    texts: list[str] = []
    handlers: list[Handler] = [replay(case[0]) for case in ERROR_CASES.values()]
    handlers += [raising(case[0]) for case in TRANSPORT_CASES.values()]
    handlers.append(answer(200, {"traces_deleted": -3}))
    for config in (all_secrets_config(), ClientConfig(tracking_uri=BASE_URL, token=TOKEN)):
        for handler in handlers:
            async with make_client(Recorder(handler), config=config) as client:
                texts.extend(await error_texts_of_every_call(client))
        client = make_client(Recorder(answer()), config=config)
        with pytest.raises(EngineClosedError) as closed:
            await client.search_traces("1")
        texts.append(str(closed.value))
    assert len(texts) > 100
    for text in texts:
        assert_no_secret(text)


# -- lifecycle ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_using_the_client_before_async_with_raises_engine_closed() -> None:
    """Calls on a client that was never opened raise EngineClosedError, sending nothing."""
    recorder = Recorder(answer(200, {"traces_deleted": 1}))
    client = make_client(recorder)
    with pytest.raises(EngineClosedError):
        await client.delete_traces("1", max_timestamp_millis=10)
    with pytest.raises(EngineClosedError):
        await client.search_traces("1")
    with pytest.raises(EngineClosedError):
        await client.get_experiment("1")
    assert recorder.requests == []


@pytest.mark.asyncio
async def test_a_closed_client_cannot_be_used_or_reopened() -> None:
    """After ``async with`` exits, calls and reopening raise EngineClosedError."""
    recorder = Recorder(answer(200, {"traces_deleted": 1}))
    client = make_client(recorder)
    async with client:
        assert await client.delete_traces("1", max_timestamp_millis=10) == 1
    with pytest.raises(EngineClosedError):
        await client.delete_traces("1", max_timestamp_millis=10)
    with pytest.raises(EngineClosedError):
        client.open()
    with pytest.raises(EngineClosedError):
        async with client:
            pass  # pragma: no cover - never entered
    assert len(recorder.requests) == 1


def test_engine_closed_error_is_not_an_api_error() -> None:
    """Misuse is a usage problem, not something the server said."""
    assert not issubclass(EngineClosedError, MlflowApiError)


# -- parse_retry_after ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("7", 7.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("nan", None),
        ("inf", None),
        ("-inf", None),
        ("soon", None),
        ("Wed, 99 Foo 2025 99:99:99 GMT", None),
        ("Wed, 01 Jan 2025 00:00:30 GMT", 30.0),
        ("Wed, 01 Jan 2025 00:00:00 GMT", 0.0),
        ("Tue, 31 Dec 2024 23:59:00 GMT", 0.0),
        ("Wed, 01 Jan 2025 01:00:30 +0100", 30.0),
        ("Wed, 01 Jan 2025 00:00:30 -0000", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """Delay-seconds and HTTP dates parse; garbage and naive dates give None; never negative."""
    assert parse_retry_after(value, now=FIXED_NOW) == expected


def test_parse_retry_after_defaults_to_the_system_clock() -> None:
    """Without ``now`` an HTTP date far in the past gives 0 and one far ahead a large delay."""
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT") == 0.0
    far_future = parse_retry_after("Fri, 01 Jan 9999 00:00:00 GMT")
    assert far_future is not None
    assert far_future > 10**9


# -- parse_rfc3339_millis -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-04T05:06:07Z", utc_millis(2024, 3, 4, 5, 6, 7)),
        ("2024-03-04T05:06:07z", utc_millis(2024, 3, 4, 5, 6, 7)),
        ("2024-03-04T05:06:07.123Z", utc_millis(2024, 3, 4, 5, 6, 7) + 123),
        ("2024-03-04T05:06:07.123456Z", utc_millis(2024, 3, 4, 5, 6, 7) + 123),
        ("2024-03-04T05:06:07.123999999Z", utc_millis(2024, 3, 4, 5, 6, 7) + 123),
        ("2024-03-04T05:06:07.1Z", utc_millis(2024, 3, 4, 5, 6, 7) + 100),
        ("2024-03-04T05:06:07.000Z", utc_millis(2024, 3, 4, 5, 6, 7)),
        ("2024-03-04T05:06:07+00:00", utc_millis(2024, 3, 4, 5, 6, 7)),
        ("2024-03-04T00:06:07.5-05:00", utc_millis(2024, 3, 4, 5, 6, 7) + 500),
        (" 2024-03-04T05:06:07.999Z ", utc_millis(2024, 3, 4, 5, 6, 7) + 999),
        ("1970-01-01T00:00:00Z", 0),
    ],
)
def test_parse_rfc3339_millis(text: str, expected: int) -> None:
    """0, 1, 3, 6 or 9 fractional digits and any offset give exact milliseconds."""
    assert parse_rfc3339_millis(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "garbage", "2024-03-04T05:06:07", "2024-03-04T05:06:07.123", "2024-13-04T05:06:07Z"],
)
def test_parse_rfc3339_millis_rejects_garbage(text: str) -> None:
    """Unparseable or zone-less timestamps raise ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies with the input
        parse_rfc3339_millis(text)


@given(
    moment=st.datetimes(
        min_value=datetime(1970, 1, 1),  # hypothesis wants naive bounds
        max_value=datetime(9999, 12, 30),
        timezones=st.just(UTC),
    ),
    nanos=st.integers(min_value=0, max_value=999),
    digits=st.sampled_from([0, 3, 6, 9]),
    offset_minutes=st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_parse_rfc3339_millis_is_exact_for_any_moment(
    moment: datetime, nanos: int, digits: int, offset_minutes: int
) -> None:
    """For any instant, precision and offset, parsing gives floor(epoch ms) exactly."""
    offset = timedelta(minutes=offset_minutes)
    local = moment.astimezone(timezone(offset))  # the same instant, shown in another zone
    fraction = f"{moment.microsecond:06d}{nanos:03d}"[:digits]
    sign = "+" if offset_minutes >= 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    text = (
        local.strftime("%Y-%m-%dT%H:%M:%S")
        + (f".{fraction}" if digits else "")
        + f"{sign}{hours:02d}:{minutes:02d}"
    )
    whole_seconds = calendar.timegm(moment.utctimetuple())
    expected = whole_seconds * 1000 + (moment.microsecond // 1000 if digits >= 3 else 0)
    assert parse_rfc3339_millis(text) == expected


@pytest.mark.parametrize(
    ("status", "body", "content_type", "error_type", "unknown"),
    [
        (
            503,
            {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "database is locked"},
            "application/json",
            ServerUnavailableError,
            False,
        ),
        (
            500,
            {"error_code": "INTERNAL_ERROR", "message": "boom"},
            "application/json",
            ServerError,
            False,
        ),
        (
            503,
            "upstream connect error or disconnect/reset before headers. reset reason: "
            "connection termination",
            "text/plain",
            ServerUnavailableError,
            True,
        ),
        (
            500,
            "<html><head><title>500 Internal Server Error</title></head></html>",
            "text/html",
            ServerError,
            True,
        ),
        (
            500,
            {"message": "an API gateway's JSON, not MLflow's"},
            "application/json",
            ServerError,
            True,
        ),
        (502, {"error_code": "BAD_GATEWAY", "message": "x"}, "application/json", ServerError, True),
        (520, "<html>cloudflare</html>", "text/html", ServerError, True),
        (522, "<html>cloudflare</html>", "text/html", ServerError, True),
        (524, "<html>cloudflare</html>", "text/html", ServerError, True),
        (599, "", "text/plain", ServerError, True),
        (302, "<a href='https://sso.example.com'>login</a>", "text/html", RedirectError, False),
    ],
    ids=[
        "mlflow-503",
        "mlflow-500",
        "envoy-503",
        "nginx-500",
        "gateway-json-500",
        "502",
        "520",
        "522",
        "524",
        "599-empty",
        "302",
    ],
)
@pytest.mark.asyncio
async def test_only_mlflow_json_5xx_is_certain(
    status: int,
    body: str | dict[str, str],
    content_type: str,
    error_type: type[Exception],
    unknown: bool,
) -> None:
    """(11.1) A 5xx that is not MLflow's own JSON error may follow the work: outcome unknown."""
    content = json.dumps(body).encode() if isinstance(body, dict) else body.encode()
    headers = {"Content-Type": content_type, "Location": "https://sso.example.com/login"}

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content, headers=headers)

    async with TracesClient(
        ClientConfig(tracking_uri="http://mlflow.test"), transport=httpx.MockTransport(answer)
    ) as client:
        with pytest.raises(MlflowApiError) as caught:
            await client.delete_traces("1", max_timestamp_millis=5, max_traces=10)

    assert type(caught.value) is error_type
    assert caught.value.outcome_unknown is unknown
