"""Dry runs (``Engine.plan``): exact counts, and never a delete request.

The unit tests answer ``experiments/get`` and ``traces/search`` from a small in-memory
server behind an ``httpx.MockTransport`` that fails the test on any ``delete-traces`` request.
The integration tests do the same around the real server, then check that a real run deletes
exactly what the plan counted.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from async_trace_delete import (
    ClientConfig,
    ConflictingJobsError,
    DeleteSpec,
    Engine,
    EngineConfig,
    JobState,
)
from tests.support.mlflow_server import MlflowServer
from tests.support.seed import (
    SeedTrace,
    StoredTrace,
    format_request_time,
    make_trace_id,
    make_traces,
    remaining_traces,
    seed_traces_sql,
)

BASE_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
NOW_MS = BASE_MS + 30 * 86_400_000
FAKE_URL = "http://mlflow.test"
FAKE_EXPERIMENT = "7"
DELETE_PATH_SUFFIX = "/mlflow/traces/delete-traces"

_CLAUSE_STATUS = re.compile(r"status = '(\w+)'")
_CLAUSE_TIMESTAMP = re.compile(r"timestamp_ms (<=|>=) (\d+)")
_CLAUSE_IDS = re.compile(r"request_id IN \((.*)\)")


@dataclass(frozen=True)
class FakeTrace:
    """One trace of the in-memory server."""

    trace_id: str
    timestamp_ms: int
    state: str


def _clause_test(clause: str) -> Callable[[FakeTrace], bool] | None:
    """A predicate for one filter clause this fake understands, or None."""
    if match := _CLAUSE_STATUS.fullmatch(clause):
        state = match.group(1)
        return lambda trace: trace.state == state
    if match := _CLAUSE_TIMESTAMP.fullmatch(clause):
        operator, value = match.group(1), int(match.group(2))
        if operator == "<=":
            return lambda trace: trace.timestamp_ms <= value
        return lambda trace: trace.timestamp_ms >= value
    if match := _CLAUSE_IDS.fullmatch(clause):
        wanted = {item.strip().strip("'") for item in match.group(1).split(",")}
        return lambda trace: trace.trace_id in wanted
    return None


class ReadOnlyServer:
    """Answers experiment look-ups and searches like MLflow; fails the test on any delete."""

    def __init__(self, traces: list[FakeTrace]) -> None:
        self.traces = sorted(traces, key=lambda trace: (trace.timestamp_ms, trace.trace_id))
        self.searches: list[dict[str, Any]] = []
        self.deletes: list[bytes] = []
        self.transport = httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Route one request."""
        path = request.url.path
        if path.endswith(DELETE_PATH_SUFFIX):
            self.deletes.append(request.content)
            pytest.fail(f"a dry run sent a delete request: {request.content!r}")
        if path == "/api/2.0/mlflow/experiments/get":
            return self._experiment(request.url.params["experiment_id"])
        if path == "/api/3.0/mlflow/traces/search":
            return self._search(json.loads(request.content))
        pytest.fail(f"unexpected request {request.method} {request.url}")

    def _experiment(self, experiment_id: str) -> httpx.Response:
        if experiment_id != FAKE_EXPERIMENT:
            return httpx.Response(
                404, json={"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no experiment"}
            )
        experiment = {"experiment_id": experiment_id, "name": "e", "lifecycle_stage": "active"}
        return httpx.Response(200, json={"experiment": experiment})

    def _search(self, body: dict[str, Any]) -> httpx.Response:
        self.searches.append(body)
        location = body["locations"][0]["mlflow_experiment"]["experiment_id"]
        assert location == FAKE_EXPERIMENT
        assert body["order_by"] == ["timestamp_ms ASC"]
        tests = []
        for clause in filter(None, body.get("filter", "").split(" AND ")):
            test = _clause_test(clause)
            if test is None:
                message = f"this fake does not understand {clause!r}"
                return httpx.Response(
                    400, json={"error_code": "INVALID_PARAMETER_VALUE", "message": message}
                )
            tests.append(test)
        matching = [trace for trace in self.traces if all(test(trace) for test in tests)]
        offset = int(body.get("page_token", "0"))
        end = offset + int(body["max_results"])
        page = [
            {
                "trace_id": trace.trace_id,
                "request_time": format_request_time(trace.timestamp_ms),
                "state": trace.state,
            }
            for trace in matching[offset:end]
        ]
        answer: dict[str, Any] = {"traces": page}
        if end < len(matching):
            answer["next_page_token"] = str(end)
        return httpx.Response(200, json=answer)


def fake_traces() -> list[FakeTrace]:
    """230 traces 10 ms apart, every third one ERROR, pairs sharing a timestamp at the end."""
    traces = [
        FakeTrace(make_trace_id(), BASE_MS + index * 10, "ERROR" if index % 3 == 2 else "OK")
        for index in range(200)
    ]
    traces += [
        FakeTrace(make_trace_id(), BASE_MS + 2_000 + (index // 2) * 10, "ERROR")
        for index in range(30)
    ]
    return traces


def make_fake_engine(server: ReadOnlyServer) -> Engine:
    """An engine on the fake server with small search pages (many pages per plan)."""
    return Engine(
        EngineConfig(client=ClientConfig(tracking_uri=FAKE_URL), search_page_size=25),
        transport=server.transport,
        wall_clock_ms=lambda: NOW_MS,
    )


def order(traces: list[FakeTrace]) -> list[FakeTrace]:
    """Oldest first, ties by ID: the server's order."""
    return sorted(traces, key=lambda trace: (trace.timestamp_ms, trace.trace_id))


def spec_for(kind: str, traces: list[FakeTrace]) -> tuple[DeleteSpec, list[FakeTrace], int]:
    """A spec of ``kind``, the traces it would delete (in order), and how many it matches."""
    cutoff = BASE_MS + 1_495
    older = [trace for trace in order(traces) if trace.timestamp_ms <= cutoff]
    errors = [trace for trace in order(traces) if trace.state == "ERROR"]
    older_errors = [trace for trace in errors if trace.timestamp_ms <= cutoff]
    common = {"experiment_id": FAKE_EXPERIMENT}
    if kind == "cutoff":
        return DeleteSpec(**common, max_timestamp_millis=cutoff), older, len(older)
    if kind == "capped-cutoff":
        spec = DeleteSpec(**common, max_timestamp_millis=cutoff, max_traces=60)
        return spec, older[:60], len(older)
    if kind == "selective":
        return DeleteSpec(**common, filter_string="status = 'ERROR'"), errors, len(errors)
    if kind == "selective-cutoff-capped":
        spec = DeleteSpec(
            **common, filter_string="status = 'ERROR'", max_timestamp_millis=cutoff, max_traces=30
        )
        return spec, older_errors[:30], len(older_errors)
    if kind == "guarded-selective":
        spec = DeleteSpec(**common, filter_string="status = 'ERROR'", expect_at_most=len(errors))
        return spec, errors, len(errors)
    assert kind == "ids"
    chosen = random.Random(1).sample(traces, 140)
    given = [trace.trace_id for trace in chosen] + [make_trace_id() for _ in range(20)]
    given += given[:35]  # repeats
    return DeleteSpec(**common, trace_ids=given), order(chosen), len(chosen)


PLAN_KINDS = [
    "cutoff",
    "capped-cutoff",
    "selective",
    "selective-cutoff-capped",
    "guarded-selective",
    "ids",
]


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", PLAN_KINDS)
async def test_plan_counts_exactly_and_never_sends_a_delete(kind: str) -> None:
    """Every kind of job is counted exactly, oldest sample first, over many pages, no delete."""
    traces = fake_traces()
    server = ReadOnlyServer(traces)
    spec, doomed, matched = spec_for(kind, traces)

    async with make_fake_engine(server) as engine:
        plan = await engine.plan([spec], sample_size=5)

    job = plan.jobs[0]
    assert server.deletes == []
    assert len(server.searches) > 1
    assert (job.would_delete, job.matched, plan.would_delete) == (len(doomed), matched, len(doomed))
    assert job.mode == spec.mode
    sampled = [sample.trace_id for sample in job.sample]
    if kind == "ids":  # see test_plan_sample_of_an_id_job_is_the_oldest
        assert len(sampled) == 5
        assert set(sampled) <= {t.trace_id for t in doomed}
    else:
        assert sampled == [t.trace_id for t in doomed[:5]]
    assert (job.oldest_ms, job.newest_ms) == (doomed[0].timestamp_ms, doomed[-1].timestamp_ms)
    assert job.requested_ids == (160 if kind == "ids" else None)


@pytest.mark.asyncio
async def test_plan_sample_of_an_id_job_is_the_oldest() -> None:
    """For more than 100 IDs, the sample is still the oldest traces that would go."""
    traces = fake_traces()
    server = ReadOnlyServer(traces)
    newest_first = [trace.trace_id for trace in reversed(order(traces))]
    spec = DeleteSpec(experiment_id=FAKE_EXPERIMENT, trace_ids=newest_first)

    async with make_fake_engine(server) as engine:
        plan = await engine.plan([spec], sample_size=3)

    assert [sample.trace_id for sample in plan.jobs[0].sample] == [
        trace.trace_id for trace in order(traces)[:3]
    ]
    assert server.deletes == []


@pytest.mark.asyncio
async def test_plan_of_several_jobs_on_one_experiment_is_refused_and_sends_no_delete() -> None:
    """Every kind of job on one experiment at once is refused: one job per experiment."""
    traces = fake_traces()
    server = ReadOnlyServer(traces)
    cases = [spec_for(kind, traces) for kind in PLAN_KINDS]

    async with make_fake_engine(server) as engine:
        with pytest.raises(ConflictingJobsError, match="one job per experiment"):
            await engine.plan([spec for spec, _, _ in cases])
        plans = [await engine.plan([spec]) for spec, _, _ in cases]

    assert server.deletes == []
    assert [plan.would_delete for plan in plans] == [len(doomed) for _, doomed, _ in cases]


@pytest.mark.asyncio
async def test_plan_of_nothing_matching_is_zero_with_an_empty_sample() -> None:
    """A filter matching nothing plans zero, with no sample and no timestamps."""
    server = ReadOnlyServer([FakeTrace(make_trace_id(), BASE_MS, "OK")])
    spec = DeleteSpec(experiment_id=FAKE_EXPERIMENT, filter_string="status = 'ERROR'")

    async with make_fake_engine(server) as engine:
        plan = await engine.plan([spec])

    job = plan.jobs[0]
    assert (job.would_delete, job.matched, job.sample) == (0, 0, ())
    assert (job.oldest_ms, job.newest_ms) == (None, None)
    assert server.deletes == []


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
