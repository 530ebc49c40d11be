"""A delete answered by something that is not MLflow (a login page, a gateway's "It works!"
page, with a 200) is never retried: the job fails at once, the call counted in doubt."""

from __future__ import annotations

import pytest

from async_trace_delete import JobState, NotMlflowServerError
from tests.support.sim_engine import cutoff_spec, fixed_batches, make_engine, seeded
from tests.support.simulated_server import DeleteCall, Fault, SimulatedServer

pytestmark = pytest.mark.anyio

LOGIN_PAGE = Fault(
    status=200,
    text="<html><title>Sign in</title></html>",
    headers={"Content-Type": "text/html; charset=utf-8"},
)


async def test_a_page_answering_a_delete_fails_the_job_without_a_retry() -> None:
    """One delete call, no retry; the batch it asked for is ambiguous (what the page's
    server forwarded is unknown), nothing is counted deleted, the other traces stay."""
    server = SimulatedServer()
    experiment_id, cutoff = seeded(server, old=300, new=10)

    def page(call: DeleteCall) -> Fault | None:
        return LOGIN_PAGE

    server.fault_rule = page
    async with make_engine(server, **fixed_batches(100)) as engine:
        report = await engine.run([cutoff_spec(experiment_id, cutoff)])

    (job,) = report.jobs
    assert job.state is JobState.FAILED
    assert len(server.deletes) == 1
    assert job.retries == 0
    assert (job.deleted, job.ambiguous) == (0, 100)
    assert job.error_type == NotMlflowServerError.__name__
    assert job.error is not None
    assert "did not answer like an MLflow tracking server (got 200 text/html 'Sign in'" in (
        job.error
    )
    assert len(server.remaining(experiment_id)) == 310
