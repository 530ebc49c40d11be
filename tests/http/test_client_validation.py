"""TracesClient refusals before any request: bad arguments (UsageError) and a closed client.

No network and no sleeping: every test talks to an ``httpx.MockTransport``.
"""

from __future__ import annotations

from typing import Any

import pytest

from async_trace_delete import EngineClosedError, MlflowApiError, UsageError
from tests.support.client_doubles import Recorder, answer, make_client

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
