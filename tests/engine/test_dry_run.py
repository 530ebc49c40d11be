"""Dry runs (``Engine.plan``): exact counts, and never a delete request.

The tests answer ``experiments/get`` and ``traces/search`` from a small in-memory server behind
an ``httpx.MockTransport`` that fails the test on any ``delete-traces`` request. The same
around the real server is ``tests/integration/test_dry_run_integration.py``.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from async_trace_delete import ClientConfig, ConflictingJobsError, DeleteSpec, Engine, EngineConfig
from tests.support.seed import format_request_time, make_trace_id

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
        if path == "/api/3.0/mlflow/traces/metrics":  # as a server before MLflow 3 answers
            return httpx.Response(404, text="<!doctype html><title>404 Not Found</title>")
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
