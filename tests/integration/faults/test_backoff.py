"""Back-off under pushback, and errors that must not be retried, against the real server.

Sustained 429/503, ``Retry-After``, ``max_attempts``; 400-404, "too many SQL variables" and a
redirect fail fast or shrink the batch: see ``conftest.py`` for the invariants each test checks.
"""

from __future__ import annotations

import itertools

import pytest

from async_trace_delete import (
    AuthenticationError,
    BatchSizeChanged,
    BatchTooLargeError,
    DeleteSpec,
    Engine,
    Event,
    InvalidParameterError,
    JobState,
    NotFoundError,
    PermissionDeniedError,
    RetryPolicy,
    ServerError,
    Throttled,
)
from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.fault_tally import TALLY, fault_proxy
from tests.support.fault_world import (
    DELETE,
    ExperimentRouter,
    by_experiment,
    check_invariants,
    cutoff_job,
    delete_requests,
    engine_config,
    seed_world,
)
from tests.support.mlflow_server import MlflowServer

pytestmark = pytest.mark.integration


# -- back-off ----------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "pushback", [Fault.too_many_requests(), Fault.database_locked()], ids=["429", "503"]
)
async def test_sustained_pushback_slows_calls_and_fails_only_that_job_on_no_progress(
    pushback: Fault, mlflow_server: MlflowServer
) -> None:
    """Sustained 429/503 on one job: calls slow down, the spent budget throttles instead of
    failing, the job fails once it made no progress for progress_timeout; others finish."""
    world = await seed_world(mlflow_server, targets=2, old=150)
    sick, healthy = world.targets
    budget = 5
    async with fault_proxy(mlflow_server.url) as proxy:
        proxy.script(path_contains=DELETE, faults=[pushback.repeat(1_000)])
        config = engine_config(
            mlflow_server.url,
            retry_budget=budget,
            retry_budget_ratio=0.0,
            progress_timeout=4.0,
            retry=RetryPolicy(initial_backoff=0.05, max_backoff=0.5),
        )
        events: list[Event] = []
        router = ExperimentRouter({sick.experiment_id: proxy.url})
        async with Engine(
            config, hooks=[events.append], transport=router, random=lambda: 0.999
        ) as engine:
            run = await engine.run(
                [cutoff_job(sick, world.cutoff), cutoff_job(healthy, world.cutoff)]
            )

        reports = by_experiment(run.jobs)
        sick_report, healthy_report = reports[sick.experiment_id], reports[healthy.experiment_id]
        lost = await check_invariants(world, reports, transient=False)
        # The sick job: retried past the budget, then a clear failure naming the setting.
        assert sick_report.state is JobState.FAILED
        assert sick_report.error_type == "NoProgressError"
        assert sick_report.error is not None
        assert "progress_timeout" in sick_report.error
        assert sick_report.retries > budget
        assert sick_report.calls == sick_report.retries + 1
        assert lost[sick.experiment_id] == 0
        # The other job went on to the end.
        assert healthy_report.state is JobState.COMPLETED
        assert lost[healthy.experiment_id] == len(healthy.old)
        # Measured at the proxy: the calls of the sick job spread out...
        starts = delete_requests(proxy)
        assert len(starts) == sick_report.calls
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
        early_rate = 2 / (starts[2] - starts[0])
        late_rate = 2 / (starts[-1] - starts[-3])
        assert late_rate < early_rate / 2, f"gaps between calls: {gaps}"
        # ...and the engine-wide rate only ever went down while it was pushed back.
        rates = [event.rate for event in events if isinstance(event, Throttled)]
        assert rates == sorted(rates, reverse=True)
        assert rates[-1] < rates[0]
        TALLY.add_survived(proxy)


@pytest.mark.asyncio
async def test_retry_after_is_waited_for(mlflow_server: MlflowServer, proxy: FaultProxy) -> None:
    """A 429 with ``Retry-After: 1`` delays the next attempt by at least one second."""
    world = await seed_world(mlflow_server, old=20, new=5)
    (experiment,) = world.targets
    proxy.script(path_contains=DELETE, faults=[Fault.too_many_requests(retry_after=1)])
    async with Engine(engine_config(proxy.url)) as engine:
        run = await engine.run([cutoff_job(experiment, world.cutoff)])

    await check_invariants(world, by_experiment(run.jobs), transient=True)
    first, second = delete_requests(proxy)[:2]
    assert second - first >= 0.95
    assert run.jobs[0].retries == 1
    TALLY.add_survived(proxy)


@pytest.mark.asyncio
async def test_each_call_gives_up_after_max_attempts(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """A call failing 500 every time is tried ``max_attempts`` times, then the job fails."""
    world = await seed_world(mlflow_server, old=50, new=5)
    (experiment,) = world.targets
    proxy.script(path_contains=DELETE, faults=[Fault.internal_error().repeat(10)])
    retry = RetryPolicy(initial_backoff=0.01, max_backoff=0.05, max_attempts=3)
    async with Engine(engine_config(proxy.url, retry=retry)) as engine:
        run = await engine.run([cutoff_job(experiment, world.cutoff)])

    (report,) = run.jobs
    await check_invariants(world, by_experiment(run.jobs), transient=False)
    assert report.state is JobState.FAILED
    assert report.error_type == ServerError.__name__
    assert (report.calls, report.retries, len(delete_requests(proxy))) == (3, 2, 3)
    TALLY.add_survived(proxy)


# -- permanent errors --------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, InvalidParameterError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
    ],
)
async def test_permanent_errors_fail_after_one_call(
    status: int, error_type: type[Exception], mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """400, 401, 403 and 404 are never retried: one call, a clear error, nothing deleted."""
    world = await seed_world(mlflow_server, old=50, new=5)
    (experiment,) = world.targets
    proxy.script(path_contains=DELETE, faults=[Fault.status(status).repeat(5)])
    async with Engine(engine_config(proxy.url)) as engine:
        run = await engine.run([cutoff_job(experiment, world.cutoff)])

    (report,) = run.jobs
    lost = await check_invariants(world, by_experiment(run.jobs), transient=False)
    assert report.state is JobState.FAILED
    assert report.error_type == error_type.__name__
    assert report.error is not None
    assert f"HTTP {status}" in report.error
    assert (report.calls, report.retries, len(delete_requests(proxy))) == (1, 0, 1)
    assert lost[experiment.experiment_id] == 0
    TALLY.add_survived(proxy)


@pytest.mark.asyncio
async def test_too_many_sql_variables_halves_the_batch_and_never_grows_back(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """SQLite's "too many SQL variables" halves the batch (no retry of the same size), for good."""
    world = await seed_world(mlflow_server, old=250, new=10)
    (experiment,) = world.targets
    proxy.script(path_contains=DELETE, faults=[Fault.too_many_sql_variables().repeat(2)])
    events: list[Event] = []
    sizes = {"min_batch_size": 10, "initial_batch_size": 200, "max_batch_size": 400}
    async with Engine(engine_config(proxy.url, **sizes), hooks=[events.append]) as engine:
        run = await engine.run([cutoff_job(experiment, world.cutoff)])

    (report,) = run.jobs
    await check_invariants(world, by_experiment(run.jobs), transient=True)
    requested = report.batch_sizes
    assert requested[:3] == (200, 100, 50)
    assert [batch.outcome for batch in report.batches[:2]] == ["too_large", "too_large"]
    assert max(requested[2:]) <= 50
    assert report.retries == 0
    shrinks = [e for e in events if isinstance(e, BatchSizeChanged) and e.reason == "too_large"]
    assert [(e.old, e.new) for e in shrinks] == [(200, 100), (100, 50)]
    TALLY.add_survived(proxy)


@pytest.mark.asyncio
async def test_too_many_sql_variables_at_the_smallest_batch_fails_fast(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """At the smallest allowed batch, "too many SQL variables" fails the job after one call."""
    world = await seed_world(mlflow_server, old=50, new=5)
    (experiment,) = world.targets
    proxy.script(path_contains=DELETE, faults=[Fault.too_many_sql_variables().repeat(5)])
    fixed = {"min_batch_size": 20, "initial_batch_size": 20, "max_batch_size": 20}
    async with Engine(engine_config(proxy.url, **fixed)) as engine:
        run = await engine.run([cutoff_job(experiment, world.cutoff)])

    (report,) = run.jobs
    await check_invariants(world, by_experiment(run.jobs), transient=False)
    assert report.state is JobState.FAILED
    assert report.error_type == BatchTooLargeError.__name__
    assert (report.calls, report.retries) == (1, 0)
    TALLY.add_survived(proxy)


@pytest.mark.asyncio
async def test_too_many_sql_variables_splits_an_id_chunk(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """An ID chunk refused as too large is split in halves; every ID is still deleted once."""
    world = await seed_world(mlflow_server, old=40, new=5)
    (experiment,) = world.targets
    proxy.script(path_contains=DELETE, faults=[Fault.too_many_sql_variables()])
    config = engine_config(proxy.url, initial_id_chunk=40, max_id_chunk=40, max_concurrency=1)
    async with Engine(config) as engine:
        run = await engine.run(
            [DeleteSpec(experiment_id=experiment.experiment_id, trace_ids=tuple(experiment.old))]
        )

    (report,) = run.jobs
    await check_invariants(world, by_experiment(run.jobs), transient=True)
    assert report.batch_sizes == (40, 20, 20)
    assert (report.deleted, report.ambiguous, report.not_found) == (40, 0, 0)
    TALLY.add_survived(proxy)


@pytest.mark.asyncio
async def test_a_redirect_fails_at_once_and_teaches_the_controllers_nothing(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """(11.10) A 3xx (an SSO login page) fails the job after one call: no retry, no cut."""
    world = await seed_world(mlflow_server, old=200, new=10)
    (experiment,) = world.targets
    proxy.script(path_contains=DELETE, faults=[Fault.redirect().repeat(10)])
    events: list[Event] = []
    async with Engine(engine_config(proxy.url), hooks=[events.append]) as engine:
        run = await engine.run([cutoff_job(experiment, world.cutoff)])

    (report,) = run.jobs
    await check_invariants(world, by_experiment(run.jobs), transient=False)
    assert report.state is JobState.FAILED
    assert report.error_type == "RedirectError"
    assert report.error is not None
    assert "sso.example.com" in report.error
    assert (report.calls, report.retries, report.deleted) == (1, 0, 0)
    assert len(proxy.stats.requests(DELETE)) == 1
    assert not [event for event in events if isinstance(event, BatchSizeChanged)]
    assert not [event for event in events if isinstance(event, Throttled)]
    TALLY.add_survived(proxy)
