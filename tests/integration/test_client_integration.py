"""TracesClient against a real ``mlflow server``: counts reported AND what is left on the server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from async_trace_delete import (
    ClientConfig,
    InvalidParameterError,
    NotFoundError,
    TracesClient,
    TraceSummary,
)
from tests.support.mlflow_server import MlflowServer
from tests.support.seed import (
    SeedTrace,
    create_experiment,
    make_trace_id,
    make_traces,
    remaining_ids,
    remaining_traces,
    seed_traces_api,
    seed_traces_sql,
)

pytestmark = pytest.mark.integration

# 2024-01-01T00:00:00Z: a fixed, readable base for seeded timestamps.
BASE_MS = 1_704_067_200_000
UNKNOWN_EXPERIMENT_ID = "987654321"


@pytest_asyncio.fixture
async def client(mlflow_url: str) -> AsyncIterator[TracesClient]:
    """An open client on the session's server."""
    async with TracesClient(ClientConfig(tracking_uri=mlflow_url)) as opened:
        yield opened


def database(server: MlflowServer) -> Path:
    assert server.db_path is not None, "the session server runs on SQLite"
    return server.db_path


async def left_on_server(url: str, experiment_id: str) -> list[tuple[str, int]]:
    """(trace_id, timestamp_ms) of every trace left, oldest first."""
    return [(t.trace_id, t.timestamp_ms) for t in await remaining_traces(url, experiment_id)]


def as_pairs(traces: list[SeedTrace]) -> list[tuple[str, int]]:
    return [(t.trace_id, t.timestamp_ms) for t in sorted(traces, key=lambda t: t.timestamp_ms)]


@pytest.mark.asyncio
async def test_cutoff_deletes_exactly_what_is_at_or_before_it(
    client: TracesClient, mlflow_url: str, experiment_id: str
) -> None:
    """Traces at or before the cutoff go (including one AT it); every newer one stays."""
    cutoff = BASE_MS + 5_000
    older = make_traces(5, start_ms=BASE_MS, step_ms=1_000)  # BASE .. BASE+4000
    at_cutoff = make_traces(1, start_ms=cutoff)
    just_after = make_traces(1, start_ms=cutoff + 1)
    newer = make_traces(4, start_ms=cutoff + 1_000, step_ms=1_000)
    await seed_traces_api(mlflow_url, experiment_id, older + at_cutoff + just_after + newer)
    assert len(await remaining_ids(mlflow_url, experiment_id)) == 11

    deleted = await client.delete_traces(experiment_id, max_timestamp_millis=cutoff)

    assert deleted == 6
    assert await left_on_server(mlflow_url, experiment_id) == as_pairs(just_after + newer)
    seen = [(t.trace_id, t.timestamp_ms) async for t in client.iter_traces(experiment_id)]
    assert seen == as_pairs(just_after + newer)
    # Nothing else at or before the cutoff: a second call finds nothing.
    assert await client.delete_traces(experiment_id, max_timestamp_millis=cutoff) == 0


@pytest.mark.asyncio
async def test_max_traces_caps_a_call_and_takes_the_oldest_first(
    client: TracesClient, mlflow_server: MlflowServer, experiment_id: str
) -> None:
    """With max_traces the server deletes exactly that many, oldest first."""
    traces = make_traces(2_000, start_ms=BASE_MS)
    seed_traces_sql(database(mlflow_server), experiment_id, traces)
    cutoff = traces[-1].timestamp_ms

    first = await client.delete_traces(experiment_id, max_timestamp_millis=cutoff, max_traces=300)
    second = await client.delete_traces(experiment_id, max_timestamp_millis=cutoff, max_traces=450)

    assert (first, second) == (300, 450)
    left = await left_on_server(mlflow_server.url, experiment_id)
    assert left == as_pairs(traces[750:])


@pytest.mark.asyncio
async def test_ids_delete_exactly_those_and_ignore_unknown_ones(
    client: TracesClient, mlflow_server: MlflowServer, experiment_id: str
) -> None:
    """An ID delete removes exactly the known IDs; unknown ones are not counted."""
    traces = make_traces(50, start_ms=BASE_MS, step_ms=10)
    seed_traces_sql(database(mlflow_server), experiment_id, traces)
    doomed = traces[5:45:2]  # 20 traces, interleaved with survivors
    unknown = [make_trace_id() for _ in range(3)]

    deleted = await client.delete_traces(
        experiment_id, trace_ids=[t.trace_id for t in doomed] + unknown
    )

    assert deleted == len(doomed) == 20
    doomed_ids = {t.trace_id for t in doomed}
    survivors = [t for t in traces if t.trace_id not in doomed_ids]
    assert await left_on_server(mlflow_server.url, experiment_id) == as_pairs(survivors)
    # Idempotent: the same IDs again delete nothing.
    assert await client.delete_traces(experiment_id, trace_ids=sorted(doomed_ids)) == 0


@pytest.mark.asyncio
async def test_unknown_experiment_deletes_zero_but_is_not_found(client: TracesClient) -> None:
    """MLflow answers 0 for a delete in a missing experiment; looking it up is a 404."""
    assert await client.delete_traces(UNKNOWN_EXPERIMENT_ID, max_timestamp_millis=BASE_MS) == 0
    with pytest.raises(NotFoundError) as caught:
        await client.get_experiment(UNKNOWN_EXPERIMENT_ID)
    assert caught.value.status_code == 404
    assert caught.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert caught.value.experiment_id == UNKNOWN_EXPERIMENT_ID


@pytest.mark.asyncio
async def test_non_integer_experiment_id_is_an_invalid_parameter(client: TracesClient) -> None:
    """A non-integer experiment ID is MLflow's 400 INVALID_PARAMETER_VALUE, message kept."""
    with pytest.raises(InvalidParameterError) as caught:
        await client.delete_traces("not-a-number", max_timestamp_millis=BASE_MS, max_traces=10)
    error = caught.value
    assert error.status_code == 400
    assert error.error_code == "INVALID_PARAMETER_VALUE"
    assert "not-a-number" in error.message
    assert error.experiment_id == "not-a-number"
    assert error.batch_size == 10
    assert not error.outcome_unknown


@pytest.mark.asyncio
async def test_search_by_status_returns_exactly_the_error_traces(
    client: TracesClient, mlflow_server: MlflowServer, experiment_id: str
) -> None:
    """``status = 'ERROR'`` returns exactly the ERROR traces, with exact timestamps and the
    artifact location the server tagged them with."""
    traces = make_traces(1_200, start_ms=BASE_MS + 123, step_ms=7, error_every=4)
    seed_traces_sql(database(mlflow_server), experiment_id, traces)
    expected = [
        TraceSummary(
            t.trace_id,
            t.timestamp_ms,
            "ERROR",
            experiment_id,
            f"mlflow-artifacts:/{experiment_id}/traces/{t.trace_id}/artifacts",
        )
        for t in traces
        if t.state == "ERROR"
    ]

    found = [t async for t in client.iter_traces(experiment_id, filter_string="status = 'ERROR'")]

    assert len(expected) == 300
    assert found == expected  # oldest first, across pages of 500
    assert await client.count_traces(experiment_id, filter_string="status = 'ERROR'") == 300
    assert await client.count_traces(experiment_id) == 1_200


@pytest.mark.asyncio
async def test_or_filter_is_an_invalid_parameter(client: TracesClient, experiment_id: str) -> None:
    """MLflow's filter grammar has no OR: the server's 400 becomes InvalidParameterError."""
    with pytest.raises(InvalidParameterError) as caught:
        await client.search_traces(experiment_id, filter_string="status = 'OK' OR status = 'ERROR'")
    assert caught.value.status_code == 400
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    assert caught.value.message


@pytest.mark.asyncio
async def test_get_experiment_by_name_round_trip(client: TracesClient, mlflow_url: str) -> None:
    """An experiment is found by its ID and by its name; an unknown name is NotFoundError."""
    name = f"round-trip/{uuid.uuid4().hex}"
    created_id = await create_experiment(mlflow_url, name)

    by_id = await client.get_experiment(created_id)
    by_name = await client.get_experiment_by_name(name)

    assert by_id == by_name
    assert (by_name.experiment_id, by_name.name, by_name.lifecycle_stage) == (
        created_id,
        name,
        "active",
    )
    with pytest.raises(NotFoundError) as caught:
        await client.get_experiment_by_name(f"missing-{uuid.uuid4().hex}")
    assert caught.value.status_code == 404


@pytest.mark.asyncio
async def test_cutoff_delete_leaves_other_experiments_alone(
    client: TracesClient, mlflow_server: MlflowServer, experiment_id: str
) -> None:
    """A cutoff delete in one experiment never touches another with the same timestamps."""
    other_id = await create_experiment(mlflow_server.url)
    mine = make_traces(500, start_ms=BASE_MS)
    theirs = make_traces(500, start_ms=BASE_MS)
    seed_traces_sql(database(mlflow_server), experiment_id, mine)
    seed_traces_sql(database(mlflow_server), other_id, theirs)

    deleted = await client.delete_traces(experiment_id, max_timestamp_millis=BASE_MS + 10_000)

    assert deleted == 500
    assert await remaining_ids(mlflow_server.url, experiment_id) == set()
    assert await left_on_server(mlflow_server.url, other_id) == as_pairs(theirs)
