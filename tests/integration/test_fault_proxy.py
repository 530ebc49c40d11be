"""The fault proxy does what each fault promises, checked against a real `mlflow server`."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from tests.support.fault_proxy import Fault, FaultKind, FaultProxy
from tests.support.fault_proxy_thread import FaultProxyThread
from tests.support.mlflow_server import MlflowServer
from tests.support.seed import make_traces, remaining_ids, seed_traces_sql

DELETE_PATH = "/api/2.0/mlflow/traces/delete-traces"
GET_EXPERIMENT_PATH = "/api/2.0/mlflow/experiments/get"
CONNECTION_FAILURES = (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError)
WAIT_SECONDS = 10.0


@pytest_asyncio.fixture
async def proxy(mlflow_server: MlflowServer) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of the session's server."""
    async with FaultProxy(upstream=mlflow_server.url) as running:
        yield running
    assert running.stats.errors == []


@pytest_asyncio.fixture
async def client(proxy: FaultProxy) -> AsyncIterator[httpx.AsyncClient]:
    """A plain httpx client talking to the proxy."""
    async with httpx.AsyncClient(base_url=proxy.url, timeout=WAIT_SECONDS) as http:
        yield http


@pytest.fixture
def trace_ids(mlflow_server: MlflowServer, experiment_id: str) -> list[str]:
    """Three traces seeded straight into the server's database."""
    assert mlflow_server.db_path is not None
    traces = make_traces(3, start_ms=1_700_000_000_000)
    seed_traces_sql(mlflow_server.db_path, experiment_id, traces)
    return [trace.trace_id for trace in traces]


async def delete_ids(
    client: httpx.AsyncClient, experiment_id: str, ids: list[str]
) -> httpx.Response:
    """Delete traces by ID through `client`."""
    body = {"experiment_id": experiment_id, "request_ids": ids}
    return await client.post(DELETE_PATH, json=body)


async def settle(proxy: FaultProxy) -> None:
    """Wait until the proxy has finished every request, including upstream calls."""
    async with asyncio.timeout(WAIT_SECONDS):
        await proxy.wait_until_idle()


@pytest.mark.asyncio
async def test_pass_through_is_byte_for_byte(
    mlflow_server: MlflowServer, proxy: FaultProxy, client: httpx.AsyncClient, experiment_id: str
) -> None:
    """Without a script the proxy returns exactly the upstream status and body."""
    params = {"experiment_id": experiment_id}
    async with httpx.AsyncClient(base_url=mlflow_server.url) as direct:
        expected = await direct.get(GET_EXPERIMENT_PATH, params=params)
    proxied = await client.get(GET_EXPERIMENT_PATH, params=params)
    assert (proxied.status_code, proxied.content) == (expected.status_code, expected.content)
    assert proxied.headers["content-type"] == expected.headers["content-type"]
    assert proxy.stats.forwarded == 1
    assert not proxy.stats.injected
    assert proxy.stats.log[0].fault is FaultKind.PASS


@pytest.mark.asyncio
async def test_reset_before_deletes_nothing(
    mlflow_server: MlflowServer,
    proxy: FaultProxy,
    client: httpx.AsyncClient,
    experiment_id: str,
    trace_ids: list[str],
) -> None:
    """`reset_before` breaks the connection and the server never sees the delete."""
    proxy.script(path_contains="delete-traces", faults=[Fault.reset_before()])
    with pytest.raises(CONNECTION_FAILURES):
        await delete_ids(client, experiment_id, trace_ids)
    await settle(proxy)
    assert await remaining_ids(mlflow_server.url, experiment_id) == set(trace_ids)
    assert proxy.stats.injected["reset_before"] == 1
    assert proxy.stats.forwarded == 0
    assert proxy.stats.log[0].forwarded is False


@pytest.mark.asyncio
async def test_reset_after_deletes_upstream(
    mlflow_server: MlflowServer,
    proxy: FaultProxy,
    client: httpx.AsyncClient,
    experiment_id: str,
    trace_ids: list[str],
) -> None:
    """`reset_after` breaks the connection only after the server deleted the traces."""
    proxy.script(path_contains="delete-traces", faults=[Fault.reset_after()])
    with pytest.raises(CONNECTION_FAILURES):
        await delete_ids(client, experiment_id, trace_ids)
    assert await remaining_ids(mlflow_server.url, experiment_id) == set()
    entry = proxy.stats.log[0]
    assert (entry.forwarded, entry.upstream_status, entry.response_status) == (True, 200, None)


@pytest.mark.asyncio
async def test_delay_past_client_timeout_still_deletes(
    mlflow_server: MlflowServer, proxy: FaultProxy, experiment_id: str, trace_ids: list[str]
) -> None:
    """A delay longer than the client timeout gives ReadTimeout, yet the server deleted."""
    proxy.script(path_contains="delete-traces", faults=[Fault.delay(30.0)])
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=proxy.url, timeout=1.0) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            await delete_ids(impatient, experiment_id, trace_ids)
    await settle(proxy)
    assert time.monotonic() - started < WAIT_SECONDS  # the handler noticed the client left
    entry = proxy.stats.log[0]
    assert (entry.upstream_status, entry.client_disconnected) == (200, True)
    assert await remaining_ids(mlflow_server.url, experiment_id) == set()


@pytest.mark.asyncio
async def test_delay_holds_the_response(proxy: FaultProxy, client: httpx.AsyncClient) -> None:
    """A delay shorter than the client timeout only makes the answer late."""
    proxy.script(path_contains="experiments/get", faults=[Fault.delay(0.5)])
    started = time.monotonic()
    response = await client.get(GET_EXPERIMENT_PATH, params={"experiment_id": "0"})
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.5


@pytest.mark.asyncio
async def test_status_429_with_retry_after_deletes_nothing(
    mlflow_server: MlflowServer,
    proxy: FaultProxy,
    client: httpx.AsyncClient,
    experiment_id: str,
    trace_ids: list[str],
) -> None:
    """A 429 fault answers with `Retry-After` and never reaches the server."""
    proxy.script(path_contains="delete-traces", faults=[Fault.status(429, retry_after=2)])
    response = await delete_ids(client, experiment_id, trace_ids)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert response.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert await remaining_ids(mlflow_server.url, experiment_id) == set(trace_ids)
    assert proxy.stats.injected_statuses == {429: 1}
    assert proxy.stats.forwarded == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fault", "status", "content_type", "text"),
    [
        (Fault.database_locked(), 503, "application/json", "database is locked"),
        (Fault.too_many_sql_variables(), 503, "application/json", "too many SQL variables"),
        (Fault.internal_error(), 500, "application/json", "INTERNAL_ERROR"),
        (Fault.unauthorized(), 401, "text/html", "not authenticated"),
        (Fault.forbidden(), 403, "text/html", "Permission denied"),
    ],
)
async def test_mlflow_shaped_error_bodies(
    proxy: FaultProxy,
    client: httpx.AsyncClient,
    fault: Fault,
    status: int,
    content_type: str,
    text: str,
) -> None:
    """The convenience status faults look like what MLflow and its auth layer send."""
    proxy.script(faults=[fault])
    response = await client.get(GET_EXPERIMENT_PATH, params={"experiment_id": "0"})
    assert response.status_code == status
    assert response.headers["content-type"].startswith(content_type)
    assert text in response.text
    if content_type == "application/json":
        assert response.json()["error_code"] in {"TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR"}
    if status == 401:
        assert response.headers["WWW-Authenticate"] == 'Basic realm="mlflow"'


@pytest.mark.asyncio
async def test_truncated_json_deletes_and_breaks_the_body(
    mlflow_server: MlflowServer,
    proxy: FaultProxy,
    client: httpx.AsyncClient,
    experiment_id: str,
    trace_ids: list[str],
) -> None:
    """A truncated answer is a valid 200 with invalid JSON, and the server did delete."""
    proxy.script(path_contains="delete-traces", faults=[Fault.truncated_json()])
    response = await delete_ids(client, experiment_id, trace_ids)
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content) > 0
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert await remaining_ids(mlflow_server.url, experiment_id) == set()


@pytest.mark.asyncio
async def test_invalid_json_answers_html_without_forwarding(
    mlflow_server: MlflowServer,
    proxy: FaultProxy,
    client: httpx.AsyncClient,
    experiment_id: str,
    trace_ids: list[str],
) -> None:
    """`invalid_json` answers 200 with HTML and the server never sees the delete."""
    proxy.script(path_contains="delete-traces", faults=[Fault.invalid_json()])
    response = await delete_ids(client, experiment_id, trace_ids)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert await remaining_ids(mlflow_server.url, experiment_id) == set(trace_ids)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fault", "status", "content_type", "text"),
    [
        (Fault.envoy_503_after(), 503, "text/plain", "reset before headers"),
        (Fault.nginx_500_after(), 500, "text/html", "<center>nginx</center>"),
        (Fault.cloudflare_after(522), 522, "text/html", "522: Connection timed out"),
        (Fault.status_after(599, body=b""), 599, None, ""),
    ],
    ids=["envoy-503", "nginx-500", "cloudflare-522", "empty-599"],
)
async def test_status_after_deletes_upstream_and_answers_an_error(
    mlflow_server: MlflowServer,
    proxy: FaultProxy,
    client: httpx.AsyncClient,
    experiment_id: str,
    trace_ids: list[str],
    fault: Fault,
    status: int,
    content_type: str | None,
    text: str,
) -> None:
    """`status_after` lets the server delete, then answers the gateway's error instead."""
    proxy.script(path_contains="delete-traces", faults=[fault])
    response = await delete_ids(client, experiment_id, trace_ids)
    assert response.status_code == status
    assert response.headers.get("content-type", "").startswith(content_type or "")
    assert ("content-type" in response.headers) is (content_type is not None)
    assert text in response.text
    assert response.content == fault.body
    assert await remaining_ids(mlflow_server.url, experiment_id) == set()
    entry = proxy.stats.log[0]
    assert (entry.fault, entry.forwarded) == (FaultKind.STATUS_AFTER, True)
    assert (entry.upstream_status, entry.response_status) == (200, status)
    assert proxy.stats.injected == {"status_after": 1}
    assert proxy.stats.injected_statuses == {status: 1}
    assert proxy.stats.injected_kind_statuses == {("status_after", status): 1}


@pytest.mark.asyncio
async def test_redirect_answers_a_login_location_and_deletes_nothing(
    mlflow_server: MlflowServer,
    proxy: FaultProxy,
    client: httpx.AsyncClient,
    experiment_id: str,
    trace_ids: list[str],
) -> None:
    """`redirect` answers 302 to the SSO login page and the server never sees the delete."""
    proxy.script(path_contains="delete-traces", faults=[Fault.redirect()])
    response = await delete_ids(client, experiment_id, trace_ids)
    assert response.status_code == 302
    assert response.headers["Location"] == "https://sso.example.com/login?next=/"
    assert response.headers["content-type"].startswith("text/html")
    assert await remaining_ids(mlflow_server.url, experiment_id) == set(trace_ids)
    assert (proxy.stats.forwarded, proxy.stats.log[0].forwarded) == (0, False)
    assert proxy.stats.injected == {"redirect": 1}
    assert proxy.stats.injected_kind_statuses == {("redirect", 302): 1}


@pytest.mark.asyncio
async def test_random_mode_draws_the_gateway_faults(mlflow_server: MlflowServer) -> None:
    """`script_random` hands out `status_after` and `redirect` faults and counts each one."""
    weights = {
        Fault.envoy_503_after(): 0.4,
        Fault.cloudflare_after(524): 0.3,
        Fault.redirect(): 0.3,
    }
    async with (
        FaultProxy(upstream=mlflow_server.url) as proxy,
        httpx.AsyncClient(base_url=proxy.url) as http,
    ):
        proxy.script_random(seed=3, weights=weights, max_requests=12)
        responses = [
            await http.get(GET_EXPERIMENT_PATH, params={"experiment_id": "0"}) for _ in range(12)
        ]
    statuses = [response.status_code for response in responses]
    assert set(statuses) == {503, 524, 302}
    assert proxy.stats.injected_statuses == Counter(statuses)
    assert proxy.stats.injected == {
        "status_after": statuses.count(503) + statuses.count(524),
        "redirect": statuses.count(302),
    }
    assert proxy.stats.forwarded == statuses.count(503) + statuses.count(524)
    assert proxy.stats.errors == []


@pytest.mark.asyncio
async def test_trickle_sends_the_upstream_body_slowly(
    mlflow_server: MlflowServer, proxy: FaultProxy, client: httpx.AsyncClient
) -> None:
    """A trickled response arrives intact, one chunk per interval."""
    params = {"experiment_id": "0"}
    async with httpx.AsyncClient(base_url=mlflow_server.url) as direct:
        expected = (await direct.get(GET_EXPERIMENT_PATH, params=params)).content
    chunk_bytes = len(expected) // 4 + 1  # four chunks, three pauses
    proxy.script(faults=[Fault.trickle(chunk_bytes=chunk_bytes, interval=0.2)])
    started = time.monotonic()
    response = await client.get(GET_EXPERIMENT_PATH, params=params)
    assert response.content == expected
    assert time.monotonic() - started >= 3 * 0.2
    assert proxy.stats.injected["trickle"] == 1


@pytest.mark.asyncio
async def test_script_order_times_and_path_filter(
    proxy: FaultProxy, client: httpx.AsyncClient
) -> None:
    """Faults apply in order, `repeat` sustains one, other paths and the script's end pass."""
    proxy.script(
        path_contains="experiments/get",
        faults=[Fault.database_locked().repeat(2), Fault.PASS, Fault.too_many_requests()],
    )
    assert proxy.pending_faults == 4
    statuses = []
    for _ in range(5):
        assert (await client.get("/health")).status_code == 200  # not scripted: passes
        response = await client.get(GET_EXPERIMENT_PATH, params={"experiment_id": "0"})
        statuses.append(response.status_code)
    assert statuses == [503, 503, 200, 429, 200]
    assert proxy.pending_faults == 0
    assert proxy.stats.injected == {"status": 3}
    assert proxy.stats.connections == 1  # keep-alive: one pooled connection served them all


@pytest.mark.asyncio
async def test_random_mode_is_deterministic_for_a_seed(mlflow_server: MlflowServer) -> None:
    """The same seed gives the same faults, request by request; `max_requests` bounds it."""
    weights = {Fault.too_many_requests(): 0.3, Fault.database_locked(): 0.3}

    async def run(seed: int) -> list[int]:
        async with (
            FaultProxy(upstream=mlflow_server.url) as proxy,
            httpx.AsyncClient(base_url=proxy.url) as http,
        ):
            proxy.script_random(seed=seed, weights=weights, max_requests=12)
            responses = [
                await http.get(GET_EXPERIMENT_PATH, params={"experiment_id": "0"})
                for _ in range(15)
            ]
            return [response.status_code for response in responses]

    first, again, other = await run(1), await run(1), await run(2)
    assert first == again
    assert first != other
    assert {429, 503, 200} <= set(first[:12])
    assert first[12:] == [200, 200, 200]


@pytest.mark.asyncio
async def test_stats_measure_rate_and_concurrency(
    proxy: FaultProxy, client: httpx.AsyncClient
) -> None:
    """Concurrent delayed requests show up in the peak concurrency and the call rate."""
    proxy.script(path_contains="experiments/get", faults=[Fault.delay(0.3).repeat(3)])
    params = {"experiment_id": "0"}
    responses = await asyncio.gather(
        *(client.get(GET_EXPERIMENT_PATH, params=params) for _ in range(3))
    )
    assert [response.status_code for response in responses] == [200, 200, 200]
    assert proxy.stats.peak_concurrency("experiments/get") == 3
    assert proxy.calls_per_second("experiments/get", window=1.0) == 3.0
    assert proxy.stats.requests("delete-traces") == []


@pytest.mark.asyncio
async def test_exit_closes_an_inflight_delayed_request(mlflow_server: MlflowServer) -> None:
    """Leaving the proxy's context aborts a held response instead of waiting it out."""
    async with httpx.AsyncClient(timeout=WAIT_SECONDS) as http:
        async with FaultProxy(upstream=mlflow_server.url) as proxy:
            proxy.script(faults=[Fault.delay(60.0)])
            url = f"{proxy.url}{GET_EXPERIMENT_PATH}?experiment_id=0"
            request = asyncio.create_task(http.get(url))
            await asyncio.sleep(0.5)  # the request is now held by the proxy
            started = time.monotonic()
        assert time.monotonic() - started < 2.0
        with pytest.raises(CONNECTION_FAILURES):
            await request


def test_thread_variant_serves_synchronous_clients(mlflow_server: MlflowServer) -> None:
    """`FaultProxyThread` injects scripted faults for code without an event loop."""
    with FaultProxyThread(upstream=mlflow_server.url) as proxy, httpx.Client() as http:
        proxy.script(faults=[Fault.too_many_requests(retry_after=1)])
        url = f"{proxy.url}{GET_EXPERIMENT_PATH}?experiment_id=0"
        assert [http.get(url).status_code for _ in range(2)] == [429, 200]
        assert proxy.stats.injected["status"] == 1
        assert proxy.stats.forwarded == 1
