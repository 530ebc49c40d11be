"""The test harness itself: the real server fixture, seeding (API and SQL) and read-back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
import pytest

from tests.support.mlflow_server import (
    MlflowServer,
    ServerStartError,
    live_group_members,
    start_mlflow_server,
)
from tests.support.seed import (
    ARTIFACT_LOCATION_TAG,
    SeedTrace,
    StoredTrace,
    create_experiment,
    make_traces,
    remaining_ids,
    remaining_traces,
    seed_traces_api,
    seed_traces_sql,
)

# 2024-01-01T00:00:00Z: a fixed, readable base for seeded timestamps.
BASE_MS = 1_704_067_200_000
DELETE_TRACES_PATH = "/api/2.0/mlflow/traces/delete-traces"


def seen_as(trace: SeedTrace) -> tuple[str, int, str, dict[str, str], int]:
    """What a seeded trace should look like when read back."""
    return (trace.trace_id, trace.timestamp_ms, trace.state, dict(trace.tags), 10)


def read_back(trace: StoredTrace) -> tuple[str, int, str, dict[str, str], int | None]:
    """The comparable part of a trace read back from the server."""
    return (
        trace.trace_id,
        trace.timestamp_ms,
        trace.state,
        dict(trace.user_tags),
        trace.execution_time_ms,
    )


@pytest.mark.asyncio
async def test_api_seeded_traces_read_back_exactly(mlflow_url: str, experiment_id: str) -> None:
    """Traces created through the REST API come back with exact timestamps, states and tags."""
    traces = [
        *make_traces(12, start_ms=BASE_MS + 1, step_ms=1_001, tags={"team": "a"}, error_every=4),
        *make_traces(3, start_ms=BASE_MS + 20_000, state="IN_PROGRESS", tags={"a.b": "x y"}),
    ]
    await seed_traces_api(mlflow_url, experiment_id, traces, concurrency=4)

    found = await remaining_traces(mlflow_url, experiment_id)

    expected = sorted((seen_as(t) for t in traces), key=lambda row: (row[1], row[0]))
    assert [read_back(t) for t in found] == expected


@pytest.mark.asyncio
async def test_sql_seeded_traces_read_back_exactly_across_pages(
    mlflow_server: MlflowServer, experiment_id: str
) -> None:
    """Traces inserted with SQL come back exactly, in order, across several search pages."""
    assert mlflow_server.db_path is not None
    traces = make_traces(1_234, start_ms=BASE_MS, step_ms=7, tags={"team": "b"}, error_every=10)
    seed_traces_sql(mlflow_server.db_path, experiment_id, traces)

    found = await remaining_traces(mlflow_server.url, experiment_id)

    assert [read_back(t) for t in found] == [seen_as(t) for t in traces]


@pytest.mark.asyncio
async def test_sql_and_api_seeded_traces_look_the_same(
    mlflow_server: MlflowServer, experiment_id: str
) -> None:
    """The search API reports a SQL-seeded trace exactly like an API-seeded twin, filters too."""
    assert mlflow_server.db_path is not None
    via_api, via_sql = make_traces(2, start_ms=BASE_MS, tags={"team": "c"}, error_every=1)
    await seed_traces_api(mlflow_server.url, experiment_id, [via_api])
    seed_traces_sql(mlflow_server.db_path, experiment_id, [via_sql])

    found = {t.trace_id: t for t in await remaining_traces(mlflow_server.url, experiment_id)}
    filtered = await remaining_traces(
        mlflow_server.url,
        experiment_id,
        filter_string=f"tag.team = 'c' AND status = 'ERROR' AND timestamp_ms <= {BASE_MS + 1}",
    )

    api_trace, sql_trace = found[via_api.trace_id], found[via_sql.trace_id]
    assert api_trace.tags[ARTIFACT_LOCATION_TAG].endswith(f"/traces/{via_api.trace_id}/artifacts")
    assert (
        dataclasses.replace(
            sql_trace,
            trace_id=api_trace.trace_id,
            timestamp_ms=api_trace.timestamp_ms,
            tags={
                **sql_trace.tags,
                ARTIFACT_LOCATION_TAG: api_trace.tags[ARTIFACT_LOCATION_TAG],
            },
        )
        == api_trace
    )
    assert {t.trace_id for t in filtered} == {via_api.trace_id, via_sql.trace_id}


@pytest.mark.asyncio
async def test_create_experiment_returns_distinct_ids(mlflow_url: str) -> None:
    """Each unnamed create_experiment call makes a new experiment with its own ID."""
    ids = [await create_experiment(mlflow_url) for _ in range(3)]
    assert len(set(ids)) == 3
    assert all(experiment.isdigit() for experiment in ids)


@pytest.mark.asyncio
async def test_delete_traces_by_cutoff_removes_sql_seeded_traces(
    mlflow_server: MlflowServer, experiment_id: str
) -> None:
    """A plain delete-traces call with a cutoff removes exactly the SQL-seeded older traces."""
    assert mlflow_server.db_path is not None
    traces = make_traces(3_000, start_ms=BASE_MS, step_ms=10)
    seed_traces_sql(mlflow_server.db_path, experiment_id, traces)
    cutoff_ms = traces[1_999].timestamp_ms  # inclusive: the oldest 2000 go

    async with httpx.AsyncClient(base_url=mlflow_server.url, timeout=60.0) as client:
        response = await client.post(
            DELETE_TRACES_PATH,
            json={"experiment_id": experiment_id, "max_timestamp_millis": cutoff_ms},
        )

    assert response.status_code == 200, response.text
    assert response.json() == {"traces_deleted": 2_000}
    assert await remaining_ids(mlflow_server.url, experiment_id) == {
        t.trace_id for t in traces[2_000:]
    }


def test_server_fixture_serves_health_and_keeps_state_in_its_workdir(
    mlflow_server: MlflowServer,
) -> None:
    """The session server answers /health and keeps its database and log in its workdir."""
    assert httpx.get(f"{mlflow_server.url}/health", timeout=10.0).status_code == 200
    assert mlflow_server.db_path == mlflow_server.workdir / "mlflow.db"
    assert mlflow_server.db_path.exists()
    assert mlflow_server.log_path.exists()
    assert mlflow_server.process.poll() is None
    assert mlflow_server.url == f"http://127.0.0.1:{mlflow_server.port}"


@pytest.mark.integration
def test_server_start_timeout_raises_with_log_and_leaves_no_process(tmp_path: Path) -> None:
    """A server that is not healthy in time is killed with its group and reported with its log."""
    with pytest.raises(ServerStartError, match="not healthy") as caught:
        start_mlflow_server(tmp_path, startup_timeout=0.5)

    server = caught.value.server
    assert server.process.returncode is not None
    assert live_group_members(server.process.pid) in (set(), None)
    assert "last lines of" in str(caught.value)
    server.stop()  # idempotent: a second stop is a no-op
