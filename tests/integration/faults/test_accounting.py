"""Fault mixes keep every invariant, and lost answers are counted as ambiguous, never as deleted.

Transient mixes (scripted and seeded random), lost answers, gateway 5xx after the work, MLflow's
own JSON 503, and a flaky path: see ``conftest.py`` for the invariants each test checks.
"""

from __future__ import annotations

import pytest

from async_trace_delete import (
    ClientConfig,
    DeleteSpec,
    Engine,
    EngineConfig,
    Event,
    JobState,
    RetryPolicy,
    RetryScheduled,
)
from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.fault_tally import TALLY, fault_kinds, violation
from tests.support.fault_world import (
    DELETE,
    REQUEST_TIMEOUT,
    by_experiment,
    check_invariants,
    cutoff_job,
    engine_config,
    seed_world,
)
from tests.support.mlflow_server import MlflowServer

pytestmark = pytest.mark.integration


# -- invariants across fault mixes -------------------------------------------------------------

FAULT_MIXES: dict[str, list[Fault]] = {
    "pushback": [
        Fault.too_many_requests(retry_after=0.2),
        Fault.database_locked(),
        Fault.PASS,
        Fault.too_many_requests(),
        Fault.internal_error(),
        Fault.PASS,
        Fault.status(502),
        Fault.database_locked().repeat(2),
    ],
    "lost-answers": [
        Fault.reset_after(),
        Fault.PASS,
        Fault.truncated_json(),
        Fault.reset_before(),
        Fault.PASS,
        Fault.reset_after(),
        # No Fault.invalid_json() here: a 200 page is not a transient fault but an answer
        # that is not MLflow's; it fails the job at once (test_a_page_answering_a_delete...).
    ],
    "slow-answers": [
        Fault.delay(REQUEST_TIMEOUT + 1),
        Fault.trickle(chunk_bytes=4, interval=0.05),
        Fault.PASS,
        Fault.delay(0.5),
        Fault.reset_after(),
    ],
}
# Transient faults only: "too many SQL variables" is permanent for a size (tested apart).
RANDOM_WEIGHTS: dict[Fault, float] = {
    Fault.too_many_requests(): 0.06,
    Fault.database_locked(): 0.06,
    Fault.internal_error(): 0.06,
    Fault.status(504): 0.04,
    Fault.reset_before(): 0.06,
    Fault.reset_after(): 0.06,
    Fault.truncated_json(): 0.06,
}


@pytest.mark.asyncio
@pytest.mark.parametrize("mix", [*FAULT_MIXES, "random-7", "random-42"])
async def test_invariants_hold_under_each_fault_mix(
    mix: str, mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """Under each mix of transient faults, two concurrent jobs keep every invariant."""
    world = await seed_world(mlflow_server, targets=2)
    if mix.startswith("random-"):
        seed = int(mix.removeprefix("random-"))
        proxy.script_random(
            path_contains=DELETE, seed=seed, weights=RANDOM_WEIGHTS, max_requests=40
        )
    else:
        proxy.script(path_contains=DELETE, faults=FAULT_MIXES[mix])
    uncapped, capped = world.targets
    async with Engine(engine_config(proxy.url)) as engine:
        run = await engine.run(
            [cutoff_job(uncapped, world.cutoff), cutoff_job(capped, world.cutoff, max_traces=120)]
        )

    reports = by_experiment(run.jobs)
    lost = await check_invariants(world, reports, transient=True)
    assert sum(fault_kinds(proxy).values()) > 0, "no fault was injected"
    assert lost[uncapped.experiment_id] == len(uncapped.old)
    assert reports[capped.experiment_id].state is JobState.COMPLETED
    TALLY.add_survived(proxy)


# -- accounting ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_lost_answers_are_ambiguous_in_report_records_and_events(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """Answers lost after the server deleted are counted ambiguous, exactly, and flagged."""
    world = await seed_world(mlflow_server, old=200)
    (experiment,) = world.targets
    proxy.script(
        path_contains=DELETE, faults=[Fault.PASS, Fault.reset_after(), Fault.truncated_json()]
    )
    events: list[Event] = []
    fixed = {"min_batch_size": 50, "initial_batch_size": 50, "max_batch_size": 50}
    async with Engine(engine_config(proxy.url, **fixed), hooks=[events.append]) as engine:
        run = await engine.run([cutoff_job(experiment, world.cutoff)])

    (report,) = run.jobs
    lost = await check_invariants(world, by_experiment(run.jobs), transient=True)
    # Both lost calls deleted a full batch: the server lost exactly deleted + ambiguous.
    assert lost[experiment.experiment_id] == report.deleted + report.ambiguous == 200
    assert (report.ambiguous, report.ambiguous_calls) == (100, 2)
    assert not report.ok
    unknown = [batch for batch in report.batches if batch.outcome_unknown]
    assert [(batch.requested, batch.deleted) for batch in unknown] == [(50, None), (50, None)]
    retries = [event for event in events if isinstance(event, RetryScheduled)]
    assert [event.outcome_unknown for event in retries] == [True, True]
    TALLY.add_survived(proxy)


@pytest.mark.asyncio
async def test_id_job_resolves_lost_answers_by_retrying_the_same_ids(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """An ID job stays exact: deleted + ambiguous + not found = requested = what the server lost."""
    world = await seed_world(mlflow_server, old=120, new=10)
    (experiment,) = world.targets
    wanted = experiment.old[:100]
    proxy.script(
        path_contains=DELETE,
        faults=[Fault.reset_before(), Fault.reset_after(), Fault.truncated_json(), Fault.PASS],
    )
    config = engine_config(proxy.url, initial_id_chunk=25, max_id_chunk=25)
    async with Engine(config) as engine:
        run = await engine.run(
            [DeleteSpec(experiment_id=experiment.experiment_id, trace_ids=tuple(wanted))]
        )

    (report,) = run.jobs
    left = await world.remaining(experiment)
    violation(left == experiment.all_ids - set(wanted), "an ID job deleted outside its IDs")
    violation(
        await world.remaining(world.bystander) == world.bystander.all_ids,
        "the bystander experiment lost traces",
    )
    assert report.state is JobState.COMPLETED
    assert report.deleted + report.ambiguous + report.not_found == len(wanted)
    # The connection reset before forwarding did nothing: its retry found all 25 IDs. The two
    # lost answers did delete: their retries found none, so those 50 stay ambiguous.
    assert (report.ambiguous, report.ambiguous_calls, report.not_found) == (50, 3, 0)
    TALLY.add_survived(proxy)


# -- issue 11: safe to leave unattended -----------------------------------------------------

# Answers from something in front of MLflow after the server did the work: not MLflow's JSON.
GATEWAY_AFTER_WORK = {
    "envoy-503": Fault.envoy_503_after(),
    "nginx-500": Fault.nginx_500_after(),
    "cloudflare-522": Fault.cloudflare_after(522),
    "empty-599": Fault.status_after(599, body=b""),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("gateway", sorted(GATEWAY_AFTER_WORK))
async def test_gateway_5xx_after_the_work_is_ambiguous_and_never_passes_the_cap(
    gateway: str, mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """(11.1) A 5xx that is not MLflow's JSON, sent after the server deleted, counts against
    the cap as ambiguous: a capped job never deletes past its cap."""
    world = await seed_world(mlflow_server, old=300, new=20)
    (experiment,) = world.targets
    proxy.script(path_contains=DELETE, faults=[GATEWAY_AFTER_WORK[gateway]])
    events: list[Event] = []
    fixed = {"min_batch_size": 100, "initial_batch_size": 100, "max_batch_size": 100}
    async with Engine(engine_config(proxy.url, **fixed), hooks=[events.append]) as engine:
        run = await engine.run([cutoff_job(experiment, world.cutoff, max_traces=150)])

    (report,) = run.jobs
    lost = await check_invariants(world, by_experiment(run.jobs), transient=True)
    # The lost answer deleted 100; only 50 of the cap were left to ask for.
    assert lost[experiment.experiment_id] == 150
    assert (report.deleted, report.ambiguous, report.ambiguous_calls) == (50, 100, 1)
    assert report.state is JobState.COMPLETED
    assert [batch.outcome_unknown for batch in report.batches] == [True, False]
    retries = [event for event in events if isinstance(event, RetryScheduled)]
    assert [event.outcome_unknown for event in retries] == [True]
    TALLY.add_survived(proxy)


@pytest.mark.asyncio
async def test_mlflow_json_503_stays_certain(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """(11.1) MLflow's own JSON 503 ("database is locked": rolled back) is not ambiguous."""
    world = await seed_world(mlflow_server, old=200, new=10)
    (experiment,) = world.targets
    proxy.script(path_contains=DELETE, faults=[Fault.database_locked()])
    async with Engine(engine_config(proxy.url)) as engine:
        run = await engine.run([cutoff_job(experiment, world.cutoff, max_traces=120)])

    (report,) = run.jobs
    lost = await check_invariants(world, by_experiment(run.jobs), transient=True)
    assert lost[experiment.experiment_id] == report.deleted == 120
    assert (report.ambiguous, report.ambiguous_calls) == (0, 0)
    TALLY.add_survived(proxy)


@pytest.mark.asyncio
async def test_a_page_answering_a_delete_fails_the_job_at_once(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """A 200 HTML page (a misconfigured gateway, a login page) answering a delete is not
    MLflow's answer: the job fails without a retry, the call is in doubt (counted against
    the cap), and the real server kept every trace (the page never forwarded it)."""
    world = await seed_world(mlflow_server, old=200, new=10)
    (experiment,) = world.targets
    proxy.script(path_contains=DELETE, faults=[Fault.invalid_json()])
    fixed = {"min_batch_size": 100, "initial_batch_size": 100, "max_batch_size": 100}
    async with Engine(engine_config(proxy.url, **fixed)) as engine:
        run = await engine.run([cutoff_job(experiment, world.cutoff)])

    (report,) = run.jobs
    lost = await check_invariants(world, by_experiment(run.jobs), transient=False)
    assert report.state is JobState.FAILED
    assert report.error_type == "NotMlflowServerError"
    assert (report.deleted, report.ambiguous, report.ambiguous_calls) == (0, 100, 1)
    assert report.retries == 0
    assert lost[experiment.experiment_id] == 0
    assert sum(fault_kinds(proxy).values()) == 1
    TALLY.add_survived(proxy)


# About 4 in 10 delete calls meet a transient fault; none says anything about batch size.
FLAKY_WEIGHTS: dict[Fault, float] = {
    Fault.database_locked(): 0.12,
    Fault.too_many_requests(retry_after=1): 0.04,
    Fault.reset_after(): 0.10,
    Fault.envoy_503_after(): 0.06,
    Fault.reset_before(): 0.04,
    Fault.delay(0.3): 0.04,
}


@pytest.mark.asyncio
async def test_a_flaky_path_slows_the_run_but_does_not_fail_it(
    mlflow_server: MlflowServer, proxy: FaultProxy
) -> None:
    """(11.14) With ~40% of delete calls meeting transient faults, no attempt limit and a
    retry budget of 5, a 2-experiment cleanup finishes; the batch is not pinned at its minimum."""
    world = await seed_world(mlflow_server, targets=2, old=3_000, new=20)
    proxy.script_random(path_contains=DELETE, seed=11, weights=FLAKY_WEIGHTS)
    config = EngineConfig(
        client=ClientConfig(tracking_uri=proxy.url, timeout=30.0),
        retry=RetryPolicy(initial_backoff=0.05, max_backoff=0.5),  # no attempt limit
        min_batch_size=25,
        initial_batch_size=100,
        max_batch_size=200,
        rate_limit=50.0,
        retry_budget=5,
        retry_budget_ratio=0.0,
        request_timeout=REQUEST_TIMEOUT,
    )
    async with Engine(config) as engine:
        run = await engine.run([cutoff_job(target, world.cutoff) for target in world.targets])

    reports = by_experiment(run.jobs)
    lost = await check_invariants(world, reports, transient=True)
    faults = sum(fault_kinds(proxy).values())
    calls = len(proxy.stats.requests(DELETE))
    assert faults >= calls // 4, (faults, calls)
    assert run.retries > config.retry_budget  # past the budget, and still finished
    for target in world.targets:
        report = reports[target.experiment_id]
        assert report.state is JobState.COMPLETED, report.error
        assert lost[target.experiment_id] == 3_000
        sizes = [batch.requested for batch in report.batches if batch.outcome == "ok"]
        assert max(sizes[-5:]) > 4 * config.min_batch_size, sizes
    TALLY.add_survived(proxy)
