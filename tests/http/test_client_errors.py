"""TracesClient error mapping: each status, unreadable answer and transport failure or timeout
becomes one of our exceptions, with its context and whether the outcome is unknown.

No network and no sleeping: every test talks to an ``httpx.MockTransport``.
"""

from __future__ import annotations

import json

import httpx
import pytest

from async_trace_delete import (
    BatchTooLargeError,
    ClientConfig,
    InvalidParameterError,
    MlflowApiError,
    RedirectError,
    RequestTimeoutError,
    ServerError,
    ServerUnavailableError,
    ThrottledError,
    TracesClient,
    TransportError,
)
from async_trace_delete._client import DELETE_PATH, SEARCH_PATH
from tests.support.client_doubles import (
    FIXED_NOW,
    Recorder,
    assert_no_httpx_leak,
    make_client,
    raising,
    replay,
)
from tests.support.client_error_cases import ERROR_CASES, TRANSPORT_CASES, mlflow_error


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
