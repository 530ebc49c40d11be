"""Dry runs (``Engine.plan``) on the real server: exact counts, and never a delete request.

A transport around the real server fails the test on any ``delete-traces`` request; then a real
run must delete exactly what the plan counted.
"""

from __future__ import annotations

import random
from pathlib import Path

import httpx
import pytest

from async_trace_delete import ClientConfig, DeleteSpec, Engine, EngineConfig, JobState
from tests.support.mlflow_server import MlflowServer
from tests.support.seed import (
    SeedTrace,
    StoredTrace,
    make_trace_id,
    make_traces,
    remaining_traces,
    seed_traces_sql,
)

BASE_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
DELETE_PATH_SUFFIX = "/mlflow/traces/delete-traces"


# -- against the real server -------------------------------------------------------------------


class DeleteRefusingTransport(httpx.AsyncBaseTransport):
    """Passes requests to the real server, but fails the test on any delete-traces request."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.deletes: list[bytes] = []
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Forward one request unless it is a delete."""
        self.requests += 1
        if request.url.path.endswith(DELETE_PATH_SUFFIX):
            self.deletes.append(request.content)
            pytest.fail(f"a dry run sent a delete request: {request.content!r}")
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the real transport."""
        await self._inner.aclose()


def real_engine(url: str, transport: httpx.AsyncBaseTransport | None = None) -> Engine:
    """An engine on the session's server with small search pages."""
    config = EngineConfig(
        client=ClientConfig(tracking_uri=url), rate_limit=1_000.0, search_page_size=50
    )
    return Engine(config, transport=transport)


def database(server: MlflowServer) -> Path:
    """The session server's SQLite file."""
    assert server.db_path is not None, "the session server runs on SQLite"
    return server.db_path


def snapshot(traces: list[StoredTrace]) -> list[tuple[str, int, str]]:
    """What identifies a stored trace: ID, timestamp, state."""
    return [(t.trace_id, t.timestamp_ms, t.state) for t in traces]


def real_traces() -> list[SeedTrace]:
    """400 traces: 200 pairs sharing a timestamp, ERRORs sprinkled in both halves."""
    return make_traces(200, start_ms=BASE_MS, step_ms=10, error_every=3) + make_traces(
        200, start_ms=BASE_MS, step_ms=10, error_every=4
    )


def real_spec(kind: str, experiment_id: str, traces: list[SeedTrace]) -> tuple[DeleteSpec, int]:
    """A spec of ``kind`` on the real server and how many traces it deletes."""
    cutoff = BASE_MS + 1_230  # 124 timestamps, 248 traces at or before it
    older = [t for t in traces if t.timestamp_ms <= cutoff]
    errors = [t for t in traces if t.state == "ERROR"]
    older_errors = [t for t in older if t.state == "ERROR"]
    if kind == "cutoff":
        return DeleteSpec(experiment_id=experiment_id, max_timestamp_millis=cutoff), len(older)
    if kind == "capped-cutoff":
        spec = DeleteSpec(experiment_id=experiment_id, max_timestamp_millis=cutoff, max_traces=77)
        return spec, 77
    if kind == "selective":
        return DeleteSpec(experiment_id=experiment_id, filter_string="status = 'ERROR'"), len(
            errors
        )
    if kind == "selective-cutoff-capped":
        spec = DeleteSpec(
            experiment_id=experiment_id,
            filter_string="status = 'ERROR'",
            max_timestamp_millis=cutoff,
            max_traces=len(older_errors) - 9,
        )
        return spec, len(older_errors) - 9
    assert kind == "ids"
    chosen = random.Random(2).sample(traces, 260)
    given = [t.trace_id for t in chosen] + [make_trace_id() for _ in range(40)]
    return DeleteSpec(experiment_id=experiment_id, trace_ids=given + given[::7]), len(chosen)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "kind", ["cutoff", "capped-cutoff", "selective", "selective-cutoff-capped", "ids"]
)
async def test_dry_run_counts_equal_what_the_real_run_then_deletes(
    mlflow_server: MlflowServer, experiment_id: str, kind: str
) -> None:
    """The plan's count and sample are exactly what the following real run deletes."""
    traces = real_traces()
    seed_traces_sql(database(mlflow_server), experiment_id, traces)
    spec, expected = real_spec(kind, experiment_id, traces)
    before = await remaining_traces(mlflow_server.url, experiment_id)

    guard = DeleteRefusingTransport()
    async with real_engine(mlflow_server.url, guard) as engine:
        plan = await engine.plan([spec])
    assert guard.deletes == []
    assert snapshot(await remaining_traces(mlflow_server.url, experiment_id)) == snapshot(before)

    async with real_engine(mlflow_server.url) as engine:
        report = await engine.run([spec])

    job, planned = report.jobs[0], plan.jobs[0]
    after = await remaining_traces(mlflow_server.url, experiment_id)
    gone = {t.trace_id for t in before} - {t.trace_id for t in after}
    assert job.state is JobState.COMPLETED
    assert planned.would_delete == expected
    assert job.deleted == planned.would_delete == len(gone) == len(before) - len(after)
    assert {sample.trace_id for sample in planned.sample} <= gone
    assert planned.oldest_ms == min(t.timestamp_ms for t in before if t.trace_id in gone)
    assert planned.newest_ms == max(t.timestamp_ms for t in before if t.trace_id in gone)


@pytest.mark.asyncio
async def test_plan_on_the_real_server_leaves_every_trace_in_place(
    mlflow_server: MlflowServer, experiment_id: str
) -> None:
    """A plan of every kind of job, even match-all, sends no delete and the server keeps all
    (one plan per job: a run or plan holds one job per experiment)."""
    traces = real_traces()
    seed_traces_sql(database(mlflow_server), experiment_id, traces)
    before = await remaining_traces(mlflow_server.url, experiment_id)
    specs = [
        real_spec(kind, experiment_id, traces)[0]
        for kind in ["cutoff", "capped-cutoff", "selective", "selective-cutoff-capped", "ids"]
    ]
    specs.append(DeleteSpec(experiment_id=experiment_id, filter_string="", allow_match_all=True))

    guard = DeleteRefusingTransport()
    async with real_engine(mlflow_server.url, guard) as engine:
        plans = [await engine.plan([spec]) for spec in specs]

    assert guard.deletes == []
    assert guard.requests > len(specs)
    assert plans[-1].jobs[0].would_delete == len(traces) == 400
    after = await remaining_traces(mlflow_server.url, experiment_id)
    assert snapshot(after) == snapshot(before)
    assert [t.user_tags for t in after] == [t.user_tags for t in before]
