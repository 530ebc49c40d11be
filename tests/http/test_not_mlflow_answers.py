"""Answers that are not MLflow's (respx): an HTML or plain-text 404/405 where MLflow answers
its JSON error, a 2xx page. They are NotMlflowServerError naming the server and what came
back, never NotFoundError ("no such experiment"); MLflow's own JSON 404 still is, and so is a
missing optional endpoint (an older MLflow), which its callers fall back from."""

from __future__ import annotations

import httpx
import pytest
import respx

from async_trace_delete import ClientConfig, NotFoundError, NotMlflowServerError, TracesClient
from async_trace_delete._client import GET_EXPERIMENT_BY_NAME_PATH, METRICS_PATH, TRACE_INFOS_PATH
from async_trace_delete._counting import CountQuery

URL = "http://mlflow.test:5000"
HTML_404 = httpx.Response(
    404, html="<!doctype html><html><title>404 Not Found</title><h1>Not Found</h1></html>"
)


def client() -> TracesClient:
    return TracesClient(ClientConfig(tracking_uri=URL))


@pytest.mark.asyncio
@respx.mock(base_url=URL, assert_all_called=True)
async def test_html_404_on_a_lookup_is_not_mlflow(respx_mock: respx.MockRouter) -> None:
    """The experiment lookup answered by a web page is not "no experiment named"."""
    respx_mock.get(GET_EXPERIMENT_BY_NAME_PATH).mock(return_value=HTML_404)
    async with client() as traces:
        with pytest.raises(NotMlflowServerError) as caught:
            await traces.get_experiment_by_name("big-a")
    assert not isinstance(caught.value, NotFoundError)
    assert caught.value.server == URL
    assert caught.value.status_code == 404
    assert not caught.value.outcome_unknown
    assert str(caught.value).startswith(
        f"the server at {URL} did not answer like an MLflow tracking server (got 404 text/html "
        f"'404 Not Found' from {GET_EXPERIMENT_BY_NAME_PATH}, where MLflow answers JSON); check "
        "that the tracking URI is the MLflow server's own address"
    )


@pytest.mark.asyncio
@respx.mock(base_url=URL, assert_all_called=True)
async def test_mlflow_json_404_is_still_not_found(respx_mock: respx.MockRouter) -> None:
    """MLflow's own RESOURCE_DOES_NOT_EXIST stays NotFoundError (a missing experiment)."""
    respx_mock.get(GET_EXPERIMENT_BY_NAME_PATH).mock(
        return_value=httpx.Response(
            404,
            json={"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "No experiment 'big-a'"},
        )
    )
    async with client() as traces:
        with pytest.raises(NotFoundError) as caught:
            await traces.get_experiment_by_name("big-a")
    assert type(caught.value) is NotFoundError


@pytest.mark.asyncio
@respx.mock(base_url=URL, assert_all_called=True)
async def test_a_405_page_is_not_mlflow(respx_mock: respx.MockRouter) -> None:
    """A plain-text 405 (a static server refusing POST) is not MLflow either; the /api/3.0
    endpoint gets the hint about older servers."""
    respx_mock.post("/api/3.0/mlflow/traces/search").mock(
        return_value=httpx.Response(405, text="Method Not Allowed")
    )
    async with client() as traces:
        with pytest.raises(NotMlflowServerError) as caught:
            await traces.search_traces("1")
    assert "(got 405 text/plain from /api/3.0/mlflow/traces/search" in str(caught.value)
    assert "an MLflow server older than 3.0 has no /api/3.0 endpoints" in str(caught.value)


@pytest.mark.asyncio
@respx.mock(base_url=URL, assert_all_called=True)
async def test_optional_endpoints_keep_not_found(respx_mock: respx.MockRouter) -> None:
    """traces/metrics and batchGetInfos missing (an older MLflow's HTML 404): NotFoundError,
    from which the callers fall back."""
    respx_mock.post(METRICS_PATH).mock(return_value=HTML_404)
    respx_mock.post(TRACE_INFOS_PATH).mock(return_value=HTML_404)
    async with client() as traces:
        with pytest.raises(NotFoundError) as metrics:
            await traces.query_count(CountQuery(experiment_id="1", start_ms=0, end_ms=1_000))
        with pytest.raises(NotFoundError) as infos:
            await traces.existing_trace_ids(["tr-1"])
    assert type(metrics.value) is NotFoundError
    assert type(infos.value) is NotFoundError


@pytest.mark.asyncio
@respx.mock(base_url=URL, assert_all_called=True)
async def test_a_page_answering_a_read_is_certain(respx_mock: respx.MockRouter) -> None:
    """A 200 login page answering a GET: not MLflow, and nothing can have been done."""
    respx_mock.get(GET_EXPERIMENT_BY_NAME_PATH).mock(
        return_value=httpx.Response(200, html="<title>Sign in</title>")
    )
    async with client() as traces:
        with pytest.raises(NotMlflowServerError) as caught:
            await traces.get_experiment_by_name("big-a")
    assert not caught.value.outcome_unknown
    assert "(got 200 text/html 'Sign in' from" in str(caught.value)


@pytest.mark.asyncio
@respx.mock(base_url=URL, assert_all_called=True)
async def test_json_with_another_content_type_is_read(respx_mock: respx.MockRouter) -> None:
    """A proxy that labels MLflow's JSON text/plain: the JSON is read as it is."""
    respx_mock.post("/api/2.0/mlflow/traces/delete-traces").mock(
        return_value=httpx.Response(
            200, text='{"traces_deleted": 3}', headers={"Content-Type": "text/plain"}
        )
    )
    async with client() as traces:
        deleted = await traces.delete_traces("1", max_timestamp_millis=1_000, max_traces=5)
    assert deleted == 3
