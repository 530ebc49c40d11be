"""Exact counts on the real server: the one-request count equals the paged count, the fallback
when the server cannot count in one request, and one count per job from plan to run.
"""

from __future__ import annotations

import json
from collections import Counter

import httpx
import pytest

from async_trace_delete import ClientConfig, DeleteSpec, Engine, EngineConfig, JobState
from async_trace_delete._cli.args import run_cli
from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.mlflow_server import MlflowServer
from tests.support.seed import SeedTrace, make_traces, remaining_traces, seed_traces_sql

pytestmark = pytest.mark.integration

BASE_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
CUTOFF = BASE_MS + 2_999  # 300 traces at or before it (one exactly on it), 100 after


def seeded(server: MlflowServer, experiment_id: str) -> list[SeedTrace]:
    """400 traces 10 ms apart: ERRORs every 3rd, a team tag on every 4th (some both)."""
    traces = make_traces(400, start_ms=BASE_MS, step_ms=10, error_every=3)
    tagged = [
        SeedTrace(t.trace_id, t.timestamp_ms, t.state, {**t.tags, "team": "a"} if i % 4 else t.tags)
        for i, t in enumerate(traces)
    ]
    assert server.db_path is not None
    seed_traces_sql(server.db_path, experiment_id, tagged)
    return tagged


class CountingTransport(httpx.AsyncBaseTransport):
    """Passes requests on and counts them by path."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.paths: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Count, then forward."""
        self.paths[request.url.path.rsplit("/mlflow/", 1)[-1]] += 1
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the real transport."""
        await self._inner.aclose()


def engine_on(url: str, transport: httpx.AsyncBaseTransport | None = None) -> Engine:
    config = EngineConfig(
        client=ClientConfig(tracking_uri=url), rate_limit=1_000.0, search_page_size=50
    )
    return Engine(config, transport=transport)


SPECS = {
    "cutoff": {"max_timestamp_millis": CUTOFF},
    "filter": {"filter_string": "status = 'ERROR'"},
    "cutoff+filter": {"filter_string": "status = 'ERROR'", "max_timestamp_millis": CUTOFF},
    "tag+status+bound": {
        "filter_string": "tag.team = 'a' AND status = 'OK' AND timestamp_ms >= 1704067201000",
        "max_timestamp_millis": CUTOFF,
    },
}


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", list(SPECS))
async def test_the_one_request_count_equals_the_paged_count(
    mlflow_server: MlflowServer, experiment_id: str, kind: str
) -> None:
    """For cutoff, filter and cutoff+filter jobs the metrics count is exact: the same as
    paging through every match, and what the real run then deletes."""
    traces = seeded(mlflow_server, experiment_id)
    spec = DeleteSpec(experiment_id=experiment_id, **SPECS[kind])  # type: ignore[arg-type]
    async with engine_on(mlflow_server.url) as engine:
        (resolved,) = await engine.resolve([spec])
        plan = await engine.plan([resolved], sample_size=5)
        paged = await engine.client.count_traces(
            experiment_id, filter_string=resolved.search_filter()
        )
    job = plan.jobs[0]
    assert job.count_method == "metrics", job.count_note
    assert job.would_delete == job.matched == paged > 0
    async with engine_on(mlflow_server.url) as engine:
        report = await engine.run(plan)
    left = {t.trace_id for t in await remaining_traces(mlflow_server.url, experiment_id)}
    gone = [t for t in traces if t.trace_id not in left]
    assert report.jobs[0].state is JobState.COMPLETED
    assert report.jobs[0].deleted == len(gone) == paged
    assert job.oldest_ms == min(t.timestamp_ms for t in gone)
    assert job.newest_ms == max(t.timestamp_ms for t in gone)
    assert {sample.trace_id for sample in job.sample} <= {t.trace_id for t in gone}


@pytest.mark.asyncio
async def test_a_server_without_the_endpoint_is_counted_by_paging(
    mlflow_server: MlflowServer, experiment_id: str
) -> None:
    """An older server (404 on traces/metrics) and one refusing the filter (400): the plan
    pages through search instead, says so, and counts the same."""
    seeded(mlflow_server, experiment_id)
    spec = DeleteSpec(
        experiment_id=experiment_id, filter_string="status = 'ERROR'", max_timestamp_millis=CUTOFF
    )
    async with engine_on(mlflow_server.url) as engine:
        exact = (await engine.plan([spec])).jobs[0]
    old_server = Fault.status(404, body="<!doctype html><title>404 Not Found</title>")
    refusing = Fault.status(400)
    for fault in (old_server, refusing):
        async with FaultProxy(upstream=mlflow_server.url) as proxy:
            proxy.script(path_contains="traces/metrics", faults=[fault.repeat(10)])
            async with engine_on(proxy.url) as engine:
                job = (await engine.plan([spec])).jobs[0]
            assert len(proxy.stats.requests("traces/metrics")) == 1
        assert exact.count_method == "metrics"
        assert job.count_method == "search"
        assert job.count_note is not None
        assert "paging" in job.count_note
        assert (job.would_delete, job.oldest_ms, job.newest_ms) == (
            exact.would_delete,
            exact.oldest_ms,
            exact.newest_ms,
        )


@pytest.mark.asyncio
async def test_plan_then_run_costs_one_lookup_and_one_count_per_job(
    mlflow_server: MlflowServer, experiment_id: str
) -> None:
    """``plan`` then ``run(plan, verify=True)`` with ``expect_at_most``: one experiment lookup
    and one count before deleting (the verification's second count is after)."""
    seeded(mlflow_server, experiment_id)
    spec = DeleteSpec(experiment_id=experiment_id, max_timestamp_millis=CUTOFF, expect_at_most=300)
    counting = CountingTransport()
    async with engine_on(mlflow_server.url, counting) as engine:
        plan = await engine.plan([spec], counts_only=True)
        before_run = dict(counting.paths)
        report = await engine.run(plan, verify=True)
    assert before_run == {"experiments/get": 1, "traces/metrics": 1}
    assert counting.paths["experiments/get"] == 1
    assert counting.paths["traces/metrics"] == 2  # the plan's count, and verify's count after
    # One search of one trace: the cap (expect_at_most) was reached, is anything left?
    assert counting.paths["traces/search"] == 1
    job = report.jobs[0]
    assert (job.deleted, job.matched_before, job.verified_remaining) == (300, 300, 0)


def test_the_cli_dry_run_says_when_it_counted_by_paging(
    mlflow_server: MlflowServer, experiment_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI's JSON names the count method, and a fallback's reason."""
    seeded(mlflow_server, experiment_id)
    argv = ["delete", "--experiment-id", experiment_id, "--filter", "status != 'ERROR'"]
    argv += ["--before", "2024-01-01T00:00:02.999Z", "--tracking-uri", mlflow_server.url, "--json"]
    code = run_cli(argv, environ={})
    assert code == 0
    (job,) = json.loads(capsys.readouterr().out)["jobs"]
    assert job["count_method"] == "search"  # `!=` is not a metrics filter: paged, exactly
    assert job["would_delete"] == 200
