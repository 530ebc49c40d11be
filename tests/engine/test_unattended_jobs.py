"""Regression tests for unattended runs: one job per experiment (2), hard caps and jobs
bounded by their submission (3), search answers re-checked on the client (4).

Each test names the case it guards, e.g. "(5)". Everything runs on the simulated server
(``tests/support/simulated_server.py``) with its fake clock and sleep: nothing sleeps for
real. ``random`` is fixed at 0.5 unless a test says otherwise. A name the fix added
(``ConflictingJobsError``) is looked up on the package where it is used, so on code without
it only the tests that need it fail. The other cases are in the other
``tests/engine/test_unattended_*.py`` files.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

import async_trace_delete
from async_trace_delete import DeleteSpec, Event, Hook, JobStarted, JobState
from tests.support.sim_engine import NOW_MS, cutoff_spec, fixed_batches, make_engine, seeded
from tests.support.simulated_server import BASE_MS, Fault, SimTrace, SimulatedServer, sim_traces

# -- (2) one job per experiment -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_same_experiment_by_id_and_by_name_collapses_into_one_job() -> None:
    """(2) One experiment named by ID and by name with the same selection is one job: it
    deletes 1000 of 3000 old traces, not 2000."""
    server = SimulatedServer()
    experiment_id, cutoff = seeded(server, 3000, 10)
    specs = [
        DeleteSpec(experiment_id=experiment_id, max_timestamp_millis=cutoff, max_traces=1000),
        DeleteSpec(experiment_name="exp-0", max_timestamp_millis=cutoff, max_traces=1000),
    ]
    async with make_engine(server, **fixed_batches(500)) as engine:
        report = await engine.run(specs)
    assert server.deleted(experiment_id) == 1000
    assert len(report.jobs) == 1
    job = report.jobs[0]
    assert job.label == experiment_id  # the first spec's label is kept
    assert (job.state, job.deleted, job.ambiguous, job.calls) == (JobState.COMPLETED, 1000, 0, 2)
    assert server.remaining(experiment_id) == sim_traces(3010)[1000:]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "change",
    [
        {"max_traces": 500},
        {"filter_string": "status = 'ERROR'"},
        {"max_timestamp_millis": BASE_MS + 1999},
    ],
    ids=["max_traces", "filter", "cutoff"],
)
async def test_conflicting_specs_on_one_experiment_are_refused_before_any_call(
    change: dict[str, Any],
) -> None:
    """(2) Two different selections on one experiment (by ID and by name) make run() and
    plan() raise ConflictingJobsError naming both labels, before any delete or search."""
    server = SimulatedServer()
    experiment_id, cutoff = seeded(server, 3000)
    first = cutoff_spec(experiment_id, cutoff, max_traces=1000, label="first")
    second = DeleteSpec(
        **{
            "experiment_name": "exp-0",
            "max_timestamp_millis": cutoff,
            "max_traces": 1000,
            "label": "second",
            **change,
        }
    )
    async with make_engine(server) as engine:
        with pytest.raises(async_trace_delete.ConflictingJobsError, match="'first' and 'second'"):
            await engine.run([first, second])
        with pytest.raises(async_trace_delete.ConflictingJobsError, match="'first' and 'second'"):
            await engine.plan([first, second])
    assert server.deletes == []
    assert server.searches == 0
    assert len(server.remaining(experiment_id)) == 3000


@pytest.mark.asyncio
async def test_submit_refuses_a_conflicting_job_and_returns_the_running_one_for_the_same() -> None:
    """(2) While a job runs, submitting another selection on its experiment raises
    ConflictingJobsError; the same selection (spelled by name) returns the running handle."""
    server = SimulatedServer()
    experiment_id, cutoff = seeded(server, 3000)
    gate = anyio.Event()
    held = Fault(hold=gate)
    server.script(held)
    config: dict[str, Any] = {
        "max_concurrency": 2,
        "adaptive_concurrency": False,
        **fixed_batches(500),
    }
    async with make_engine(server, **config) as engine:
        first = await engine.submit(
            cutoff_spec(experiment_id, cutoff, max_traces=1000, label="first")
        )
        await held.arrived.wait()
        conflicting = DeleteSpec(
            experiment_name="exp-0", max_timestamp_millis=cutoff, max_traces=500, label="second"
        )
        with pytest.raises(async_trace_delete.ConflictingJobsError, match="'first' and 'second'"):
            await engine.submit(conflicting)
        same = await engine.submit(
            DeleteSpec(experiment_name="exp-0", max_timestamp_millis=cutoff, max_traces=1000)
        )
        deletes_while_held = len(server.deletes)
        gate.set()
        report = await first.wait()
    assert same is first
    assert deletes_while_held == 1
    assert len(engine.jobs) == 1
    assert (report.state, report.deleted, report.calls) == (JobState.COMPLETED, 1000, 2)
    assert server.deleted(experiment_id) == 1000


@pytest.mark.asyncio
async def test_run_refuses_a_selection_conflicting_with_a_submitted_job_still_running() -> None:
    """(2) While a submitted job runs, run() with another selection on its experiment raises
    ConflictingJobsError before sending anything."""
    server = SimulatedServer()
    experiment_id, cutoff = seeded(server, 3000)
    gate = anyio.Event()
    held = Fault(hold=gate)
    server.script(held)
    config: dict[str, Any] = {
        "max_concurrency": 2,
        "adaptive_concurrency": False,
        **fixed_batches(500),
    }
    conflicting = DeleteSpec(
        experiment_name="exp-0", max_timestamp_millis=cutoff, max_traces=500, label="second"
    )
    async with make_engine(server, **config) as engine:
        first = await engine.submit(
            cutoff_spec(experiment_id, cutoff, max_traces=1000, label="first")
        )
        await held.arrived.wait()
        try:
            with pytest.raises(
                async_trace_delete.ConflictingJobsError, match="'first' and 'second'"
            ):
                await engine.run([conflicting])
            deletes_of_run = len(server.deletes) - 1
        finally:
            gate.set()
        report = await first.wait()
    assert deletes_of_run == 0
    assert (report.state, report.deleted) == (JobState.COMPLETED, 1000)
    assert server.deleted(experiment_id) == 1000


# -- (3) expect_at_most is a hard cap; a filter job is bounded by its submission ------------------


def error_experiment(server: SimulatedServer) -> str:
    """An experiment of 200 traces, every other one ERROR (100 match ``status = 'ERROR'``)."""
    return server.add_experiment("errors", sim_traces(200, error_every=2))


def writes_on_start(server: SimulatedServer, experiment_id: str, traces: list[SimTrace]) -> Hook:
    """A hook writing ``traces`` to the experiment once the job has started."""

    def hook(event: Event) -> None:
        if isinstance(event, JobStarted):
            server.add_traces(experiment_id, traces)

    return hook


@pytest.mark.asyncio
async def test_expect_at_most_caps_a_filter_job_when_older_matches_appear_while_it_runs() -> None:
    """(3) A filter job with expect_at_most=100 whose pre-count saw 100 deletes no more than
    100 when 20 more matching traces, older than its submission, are written while it runs,
    and fails with GuardrailError; the 20 are left."""
    server = SimulatedServer()
    experiment_id = error_experiment(server)
    late = sim_traces(20, start_ms=BASE_MS + 10_000, state="ERROR", tag=1)
    spec = DeleteSpec(
        experiment_id=experiment_id, filter_string="status = 'ERROR'", expect_at_most=100
    )
    hook = writes_on_start(server, experiment_id, late)
    async with make_engine(server, hooks=[hook], search_page_size=20) as engine:
        report = await engine.run([spec])
    job = report.jobs[0]
    assert server.deleted(experiment_id) == 100
    left = server.remaining(experiment_id)
    assert sum(trace.state == "ERROR" for trace in left) == 20
    assert sum(trace.state == "OK" for trace in left) == 100
    assert (job.deleted, job.ambiguous) == (100, 0)
    assert (job.state, job.error_type) == (JobState.FAILED, "GuardrailError")
    assert job.error is not None
    assert "expect_at_most" in job.error


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("written", "guard"),
    [("while-running", 100), ("before-submission", None)],
)
async def test_a_filter_job_without_cutoff_never_deletes_traces_newer_than_its_submission(
    written: str, guard: int | None
) -> None:
    """(3) Matching traces timestamped after the submission (NOW_MS) survive a filter job
    without cutoff: every search it sends says ``timestamp_ms <= NOW_MS``; it deletes its 100."""
    server = SimulatedServer()
    experiment_id = error_experiment(server)
    newer = sim_traces(20, start_ms=NOW_MS + 1, state="ERROR", tag=1)
    hooks: list[Hook] = []
    if written == "while-running":
        hooks.append(writes_on_start(server, experiment_id, newer))
    else:
        server.add_traces(experiment_id, newer)
    spec = DeleteSpec(
        experiment_id=experiment_id, filter_string="status = 'ERROR'", expect_at_most=guard
    )
    async with make_engine(server, hooks=hooks, search_page_size=20) as engine:
        report = await engine.run([spec])
    job = report.jobs[0]
    assert server.deleted(experiment_id) == 100
    ok_traces = [trace for trace in sim_traces(200, error_every=2) if trace.state == "OK"]
    assert server.remaining(experiment_id) == sorted([*ok_traces, *newer])
    searches = [call for call in server.calls if call.kind == "search"]
    assert searches
    assert all(f"timestamp_ms <= {NOW_MS}" in (call.filter_string or "") for call in searches)
    assert (job.state, job.deleted, job.ambiguous) == (JobState.COMPLETED, 100, 0)


# -- (4) search answers are re-checked on the client ----------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("intruder", ["other-experiment", "newer-than-cutoff"])
async def test_a_search_answer_outside_the_job_fails_it_and_is_never_deleted(
    intruder: str,
) -> None:
    """(4) A search page holding a trace of another experiment, or one newer than the
    cutoff, fails the job with OutOfSelectionError; no delete call ever names that trace."""
    server = SimulatedServer()
    cutoff = BASE_MS + 1_000
    newer = SimTrace(cutoff + 1, "tr-newer", "ERROR")
    experiment_id = server.add_experiment("job", [*sim_traces(100, error_every=2), newer])
    other_id = server.add_experiment("other", sim_traces(10, state="ERROR", tag=1))
    wrong: tuple[str, SimTrace] = (
        (other_id, server.remaining(other_id)[0])
        if intruder == "other-experiment"
        else (experiment_id, newer)
    )

    def wrong_answer(searched: str, page: list[tuple[str, SimTrace]]) -> list[tuple[str, SimTrace]]:
        return [*page, wrong] if searched == experiment_id else page

    server.search_rule = wrong_answer
    spec = cutoff_spec(experiment_id, cutoff, filter_string="status = 'ERROR'")
    async with make_engine(server) as engine:
        report = await engine.run([spec])
    job = report.jobs[0]
    wrong_id = wrong[1].trace_id
    assert not any(wrong_id in (call.request_ids or ()) for call in server.deletes)
    assert wrong[1] in server.remaining(wrong[0])
    assert (job.state, job.error_type) == (JobState.FAILED, "OutOfSelectionError")
    assert server.deletes == []
    assert job.deleted == 0
    assert len(server.remaining(other_id)) == 10
