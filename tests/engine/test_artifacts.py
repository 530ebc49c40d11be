"""``with_artifacts``: a deleted trace's folder goes once the trace is known gone, never before."""

from __future__ import annotations

import pytest

from async_trace_delete import JobState
from tests.support.sim_engine import cutoff_spec, make_engine, seeded
from tests.support.simulated_artifacts import SimulatedArtifacts
from tests.support.simulated_server import SimulatedServer

pytestmark = pytest.mark.anyio


async def test_cutoff_removes_exactly_the_deleted_traces_folders() -> None:
    """A cutoff job removes the folders of what it deleted and keeps every newer trace's."""
    artifacts = SimulatedArtifacts()
    server = SimulatedServer(artifacts=artifacts)
    experiment_id, cutoff = seeded(server, old=1_200, new=300)
    every = [trace.trace_id for trace in server.remaining(experiment_id)]
    with_folders = every[::3]  # one in three has a traces.json
    artifacts.add_trace_folders(experiment_id, with_folders)
    kept = {trace_id for trace_id in with_folders if every.index(trace_id) >= 1_200}

    async with make_engine(server) as engine:
        report = await engine.run([cutoff_spec(experiment_id, cutoff, with_artifacts=True)])

    job = report.jobs[0]
    assert job.state is JobState.COMPLETED
    assert job.deleted == 1_200
    assert len(server.remaining(experiment_id)) == 300
    assert artifacts.trace_folders(experiment_id) == kept
    assert job.artifacts is not None
    assert (job.artifacts.deleted, job.artifacts.failed, job.artifacts.skipped) == (400, 0, 0)
