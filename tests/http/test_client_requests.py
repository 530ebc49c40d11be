"""TracesClient request shapes and answer parsing: delete, search, pagination, experiments.

No network and no sleeping: every test talks to an ``httpx.MockTransport``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from async_trace_delete import (
    Experiment,
    InvalidResponseError,
    NotFoundError,
    TracePage,
    TraceSummary,
)
from async_trace_delete._client import (
    DELETE_PATH,
    GET_EXPERIMENT_BY_NAME_PATH,
    GET_EXPERIMENT_PATH,
    SEARCH_PATH,
)
from tests.support.client_doubles import (
    BASE_URL,
    Recorder,
    answer,
    assert_no_httpx_leak,
    make_client,
    utc_millis,
)


def trace_item(trace_id: str, request_time: str, state: str = "OK") -> dict[str, Any]:
    return {
        "trace_id": trace_id,
        "request_time": request_time,
        "execution_duration": "0.010s",
        "state": state,
        "tags": {"mlflow.traceName": "t"},
        "trace_metadata": {},
    }


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
