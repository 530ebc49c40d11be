"""Cleanups of traces the real MLflow SDK logged (nested spans, ERROR traces, tags,
assessments), against the session's real ``mlflow server``: the search answers and delete
cascades of real traces, not seeded rows, with the limits holding behind a gateway too."""

from __future__ import annotations

import time
import uuid

import pytest

from async_trace_delete import ClientConfig, DeleteSpec, Engine, EngineConfig, JobState
from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.mlflow_server import MlflowServer
from tests.support.sdk_traces import log_sdk_traces
from tests.support.seed import create_experiment, remaining_ids

pytestmark = pytest.mark.integration


async def sdk_experiment(
    server: MlflowServer, *, ok: int, error: int
) -> tuple[str, dict[str, list[str]]]:
    """A fresh experiment holding traces the SDK logged; its ID and the IDs by outcome."""
    name = f"sdk-{uuid.uuid4().hex[:12]}"
    experiment_id = await create_experiment(server.url, name)
    logged = log_sdk_traces(server.url, name, ok=ok, error=error)
    assert await remaining_ids(server.url, experiment_id) == {*logged["ok"], *logged["error"]}
    return experiment_id, logged


@pytest.mark.asyncio
async def test_error_cleanup_of_sdk_traces_deletes_exactly_the_error_ones(
    mlflow_server: MlflowServer,
) -> None:
    """``status = 'ERROR'`` without a cutoff deletes exactly the SDK's failed traces: the
    real search answers pass the client-side check (experiment, submission bound)."""
    experiment_id, logged = await sdk_experiment(mlflow_server, ok=4, error=3)
    config = EngineConfig(client=ClientConfig(tracking_uri=mlflow_server.url))
    async with Engine(config) as engine:
        run = await engine.run(
            [DeleteSpec(experiment_id=experiment_id, filter_string="status = 'ERROR'")]
        )

    (report,) = run.jobs
    assert report.state is JobState.COMPLETED, report.error
    assert (report.deleted, report.ambiguous, report.not_found) == (3, 0, 0)
    assert await remaining_ids(mlflow_server.url, experiment_id) == set(logged["ok"])


@pytest.mark.asyncio
async def test_a_capped_cleanup_of_sdk_traces_holds_its_cap_behind_a_gateway(
    mlflow_server: MlflowServer,
) -> None:
    """A capped cutoff job on SDK traces, whose first answer Envoy loses after the server
    deleted, deletes exactly its cap: the lost batch counts against it."""
    experiment_id, logged = await sdk_experiment(mlflow_server, ok=6, error=4)
    cutoff = time.time_ns() // 1_000_000
    fixed = {"min_batch_size": 3, "initial_batch_size": 3, "max_batch_size": 3}
    async with FaultProxy(upstream=mlflow_server.url) as proxy:
        proxy.script(path_contains="delete-traces", faults=[Fault.envoy_503_after()])
        config = EngineConfig(client=ClientConfig(tracking_uri=proxy.url), **fixed)
        async with Engine(config) as engine:
            run = await engine.run(
                [DeleteSpec(experiment_id=experiment_id, max_timestamp_millis=cutoff, max_traces=5)]
            )
        assert proxy.stats.errors == []

    (report,) = run.jobs
    left = await remaining_ids(mlflow_server.url, experiment_id)
    logged_ids = {*logged["ok"], *logged["error"]}
    assert report.state is JobState.COMPLETED, report.error
    assert (report.deleted, report.ambiguous, report.ambiguous_calls) == (2, 3, 1)
    assert left <= logged_ids
    assert len(logged_ids - left) == 5
