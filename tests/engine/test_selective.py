"""Selective cleanups on the simulated server: how search pages are cut into delete calls, and
the oldest matches deleted exactly for any layout of timestamps (hypothesis).

The same against a real server is ``tests/integration/test_selective_integration.py``.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from async_trace_delete import ClientConfig, DeleteSpec, Engine, EngineConfig, JobState
from tests.support.simulated_server import (
    SIM_URL,
    LatencyModel,
    SimTrace,
    SimulatedServer,
    sim_traces,
)

# 2024-01-01T00:00:00Z: a fixed, readable base for seeded timestamps.
BASE_MS = 1_704_067_200_000
ERROR_ONLY = "status = 'ERROR'"


@pytest.mark.asyncio
async def test_a_page_remainder_does_not_shrink_the_next_delete_calls() -> None:
    """Fast calls never shrink the ID chunk: each 130-trace search page costs one delete call."""
    server = SimulatedServer(latency=LatencyModel(fixed=0.05, per_trace=0.000_1))
    matches = 5_000
    experiment = server.add_experiment(
        "e", sim_traces(matches, state="ERROR") + sim_traces(500, tag=1)
    )
    config = EngineConfig(
        client=ClientConfig(tracking_uri=SIM_URL),
        rate_limit=10_000.0,
        search_page_size=130,
        initial_id_chunk=100,
        max_concurrency=1,
    )
    engine = Engine(
        config,
        transport=server.transport,
        clock=server.clock,
        sleep=server.clock.sleep,
        random=lambda: 0.5,
    )

    async with engine:
        report = await engine.run([DeleteSpec(experiment_id=experiment, filter_string=ERROR_ONLY)])

    job = report.jobs[0]
    assert (job.state, job.deleted) == (JobState.COMPLETED, matches)
    assert len(server.remaining(experiment)) == 500
    # Every page holds 129 new matches (one is the boundary trace already queued). The first
    # pages, cut while the chunk is still 100, take two calls; every later one takes one.
    pages = math.ceil(matches / 129)
    assert job.calls <= pages + 3, job.batch_sizes


def simulated_engine(server: SimulatedServer, **settings: Any) -> Engine:
    """An engine on the simulated server, its fake clock and sleep, and fixed jitter."""
    values: dict[str, Any] = {"rate_limit": 10_000.0, **settings}
    return Engine(
        EngineConfig(client=ClientConfig(tracking_uri=SIM_URL), **values),
        transport=server.transport,
        clock=server.clock,
        sleep=server.clock.sleep,
        random=lambda: 0.5,
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    clusters=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 4)), min_size=1, max_size=10),
    page_size=st.integers(1, 40),
    cap=st.none() | st.integers(1, 300),
    chunk=st.integers(1, 60),
    concurrency=st.integers(1, 4),
)
def test_selective_job_deletes_exactly_the_oldest_matches_for_any_layout(
    clusters: list[tuple[int, int]],
    page_size: int,
    cap: int | None,
    chunk: int,
    concurrency: int,
) -> None:
    """Whatever the timestamp clusters, page size, cap and chunking: the oldest matches go."""
    server = SimulatedServer(latency=LatencyModel(fixed=0.05, per_trace=0.000_1))
    traces: list[SimTrace] = []
    for index, (errors, oks) in enumerate(clusters):
        start = BASE_MS + index * 1_000
        traces += sim_traces(errors, start_ms=start, step_ms=0, state="ERROR", tag=2 * index)
        traces += sim_traces(oks, start_ms=start, step_ms=0, tag=2 * index + 1)
    experiment = server.add_experiment("layout", traces)
    matches = sorted(trace for trace in traces if trace.state == "ERROR")
    doomed = set(matches if cap is None else matches[:cap])
    spec = DeleteSpec(experiment_id=experiment, filter_string=ERROR_ONLY, max_traces=cap)

    async def main() -> int:
        engine = simulated_engine(
            server,
            search_page_size=page_size,
            initial_id_chunk=chunk,
            max_id_chunk=60,
            max_concurrency=concurrency,
        )
        async with engine:
            report = await engine.run([spec])
        assert report.jobs[0].state is JobState.COMPLETED, report.jobs[0].error
        return report.jobs[0].deleted

    deleted = asyncio.run(main())
    assert deleted == server.deleted(experiment) == len(doomed)
    assert server.remaining(experiment) == sorted(set(traces) - doomed)
