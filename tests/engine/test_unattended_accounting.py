"""Regression tests for unattended runs: exact accounting of ID chunks under lost answers (5, 6, 7),
bounded records (13), and transient faults that must not fail a run (14).

Each test names the case it guards, e.g. "(5)". Everything runs on the simulated server
(``tests/support/simulated_server.py``) with its fake clock and sleep: nothing sleeps for
real. ``random`` is fixed at 0.5 unless a test says otherwise. The other cases are in the
other ``tests/engine/test_unattended_*.py`` files.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

import async_trace_delete
from async_trace_delete import ClientConfig, DeleteSpec, Engine, EngineConfig, JobReport, JobState
from async_trace_delete._jobs import JobRunner
from tests.support.sim_engine import (
    FAST,
    NOW_MS,
    PatientSleep,
    bracketed,
    cutoff_spec,
    denied,
    gateway_lost,
    id_chunks,
    ids_spec,
    make_engine,
    seeded,
    throttled,
    timeout_after_work,
    turns_until,
    unavailable,
)
from tests.support.simulated_server import (
    SIM_URL,
    TOO_MANY_VARIABLES,
    DeleteCall,
    FakeClock,
    Fault,
    LatencyModel,
    SimulatedServer,
    sim_traces,
)

# -- (5), (6), (7) exact accounting of ID chunks --------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("lost_answer", [gateway_lost, timeout_after_work], ids=["502", "timeout"])
async def test_a_split_chunk_whose_first_half_fails_keeps_the_doubt_it_inherited(
    lost_answer: Callable[[], Fault],
) -> None:
    """(5) 8 IDs in one chunk: the answer is lost after the work, "too many SQL variables"
    splits the retry, the first half gets a 403: all 8 stay ambiguous, so deleted <= lost
    <= deleted + ambiguous (before: lost 8, deleted 0, ambiguous 4)."""
    server = SimulatedServer()
    traces = sim_traces(8)
    experiment_id = server.add_experiment("split", traces)
    server.script(lost_answer(), Fault(status=503, message=TOO_MANY_VARIABLES), denied())
    async with make_engine(server, **id_chunks(8)) as engine:
        report = await engine.run([ids_spec(experiment_id, traces)])
    job = report.jobs[0]
    lost = server.deleted(experiment_id)
    assert lost == 8
    assert [len(call.request_ids or ()) for call in server.deletes] == [8, 8, 4]
    assert bracketed(job, lost)
    assert (job.deleted, job.ambiguous, job.ambiguous_calls, job.calls) == (0, 8, 1, 3)
    assert (job.state, job.error_type) == (JobState.FAILED, "PermissionDeniedError")


@pytest.mark.asyncio
async def test_cancelling_the_retry_of_a_chunk_in_doubt_counts_its_ids_once() -> None:
    """(6) 10 IDs in one chunk: the first answer is lost after the work, then the job is
    cancelled while the retry is in flight: ambiguous == 10, not 20."""
    server = SimulatedServer()
    traces = sim_traces(10)
    experiment_id = server.add_experiment("doubt", traces)
    retry = Fault(hold=anyio.Event())  # never answers
    server.script(timeout_after_work(), retry)
    async with make_engine(server, **id_chunks(10)) as engine:
        handle = await engine.submit(ids_spec(experiment_id, traces))
        await retry.arrived.wait()
        handle.cancel()
        report = await handle.wait()
    lost = server.deleted(experiment_id)
    assert lost == 10
    assert (report.deleted, report.ambiguous, report.ambiguous_calls) == (0, 10, 2)
    assert bracketed(report, lost)
    assert (report.state, report.calls) == (JobState.CANCELLED, 2)


@pytest.mark.asyncio
async def test_a_failed_chunk_lets_its_siblings_in_flight_finish_and_counts_them() -> None:
    """(7) Four chunks of 10 in flight, one answered 403: the other three finish and count as
    deleted (none ambiguous), nothing new is sent, the job fails with PermissionDeniedError."""
    server = SimulatedServer(latency=LatencyModel(fixed=0.2))
    traces = sim_traces(60)
    experiment_id = server.add_experiment("siblings", traces)
    gate = anyio.Event()
    forbidden = denied()
    server.script(Fault(hold=gate), Fault(hold=gate), Fault(hold=gate), forbidden)
    config: dict[str, Any] = {"max_concurrency": 4, "adaptive_concurrency": False, **id_chunks(10)}
    async with make_engine(server, **config) as engine:
        handle = await engine.submit(ids_spec(experiment_id, traces))
        await forbidden.arrived.wait()
        await turns_until(lambda: bool(handle.report().errors))  # the 403 is answered
        for _ in range(100):  # the siblings stay in flight a while after it
            await anyio.lowlevel.checkpoint()
        gate.set()
        report = await handle.wait()
    assert report.deleted == server.deleted(experiment_id) == 30
    assert (report.ambiguous, report.ambiguous_calls) == (0, 0)
    assert (report.state, report.error_type) == (JobState.FAILED, "PermissionDeniedError")
    assert report.calls == len(server.deletes) == 4
    assert len(server.remaining(experiment_id)) == 30


# -- (13) bounded records -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_per_call_records_are_bounded_and_status_builds_no_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """(13) 3000 one-ID calls with batch_record_limit=100 keep the newest 100 records (2900
    dropped) but count all 3000 calls; ``handle.status`` does not build a report."""
    server = SimulatedServer()
    traces = sim_traces(3000)
    experiment_id = server.add_experiment("many", traces)

    def no_report(self: JobRunner) -> JobReport:
        raise AssertionError("status built a report")

    async with make_engine(server, max_id_chunk=1, batch_record_limit=100) as engine:
        handle = await engine.submit(ids_spec(experiment_id, traces))
        report = await handle.wait()
        with monkeypatch.context() as patch:
            patch.setattr(JobRunner, "report", no_report)
            status = handle.status
    assert (report.calls, len(report.batches), report.batches_dropped) == (3000, 100, 2900)
    assert report.deleted == server.deleted(experiment_id) == 3000
    assert all(batch.requested == batch.deleted == 1 for batch in report.batches)
    assert (status.state, status.calls, status.deleted) == (JobState.COMPLETED, 3000, 3000)


# -- (14) transient faults do not fail an unattended run ------------------------------------------


@pytest.mark.asyncio
async def test_random_transient_faults_do_not_fail_an_unattended_cleanup() -> None:
    """(14) Two 20000-trace cutoff jobs with ~40% of deletes failing transiently (503 locked,
    429 Retry-After 1, 502 after the work, a timeout before it) both complete: old traces
    gone, new kept, counts bracket what was lost, the batch size not pinned at its minimum."""
    # A 1 s call deletes about 950 traces: some 70 calls in all.
    server = SimulatedServer(latency=LatencyModel(fixed=0.05, per_trace=1e-3))
    first_id, first_cutoff = seeded(server, 20_000, 20, tag=1)
    second_id, second_cutoff = seeded(server, 20_000, 20, tag=2)
    draws = random.Random(7)

    def transient(call: DeleteCall) -> Fault | None:
        draw = draws.random()
        if draw < 0.1:
            return unavailable()
        if draw < 0.2:
            return throttled("1")
        if draw < 0.3:
            return gateway_lost()
        if draw < 0.4:
            return Fault(raise_error=httpx.ReadTimeout)
        return None

    server.fault_rule = transient
    async with make_engine(server) as engine:
        report = await engine.run(
            [cutoff_spec(first_id, first_cutoff), cutoff_spec(second_id, second_cutoff)]
        )
        min_size = engine.config.min_batch_size
    for job, experiment_id, tag in zip(report.jobs, (first_id, second_id), (1, 2), strict=True):
        assert (job.state, job.error) == (JobState.COMPLETED, None)
        lost = server.deleted(experiment_id)
        assert lost == 20_000
        assert bracketed(job, lost)
        assert server.remaining(experiment_id) == sim_traces(20_020, tag=tag)[20_000:]
        assert max(job.batch_sizes[-10:]) > min_size * 4
    faulted = sum(call.fault is not None for call in server.deletes)
    assert len(server.deletes) > 50
    assert 0.35 < faulted / len(server.deletes) < 0.45


@pytest.mark.asyncio
async def test_a_server_always_answering_503_fails_on_no_progress() -> None:
    """(14) A server answering every delete 503 fails the job with NoProgressError, naming
    progress_timeout, once 60 s (fake) passed without a success; nothing is deleted."""
    server = SimulatedServer()
    experiment_id, cutoff = seeded(server, 500)
    server.fault_rule = lambda call: unavailable()
    async with make_engine(server, progress_timeout=60.0) as engine:
        report = await engine.run([cutoff_spec(experiment_id, cutoff)])
    job = report.jobs[0]
    assert (job.state, job.error_type) == (JobState.FAILED, "NoProgressError")
    assert job.error is not None
    assert "progress_timeout" in job.error
    assert 30 < job.elapsed <= 60
    assert (job.deleted, job.ambiguous) == (0, 0)
    assert job.calls == len(server.deletes) == job.retries + 1
    assert len(server.remaining(experiment_id)) == 500


@pytest.mark.asyncio
async def test_stop_all_during_a_plan_ends_it_with_a_library_error() -> None:
    """(9) stop_all() while a dry run waits out a read's ``Retry-After: 100`` ends the plan
    at once with a TraceDeleteError naming the job, not the engine's internal stop signal."""
    clock = FakeClock()
    sleep = PatientSleep(clock, long=5.0)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/experiments/get"):
            experiment = {"experiment_id": "1", "name": "e", "lifecycle_stage": "active"}
            return httpx.Response(200, json={"experiment": experiment})
        assert request.url.path.endswith(("/traces/search", "/traces/metrics")), request.url.path
        body = {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"}
        return httpx.Response(429, json=body, headers={"Retry-After": "100"})

    config = EngineConfig(client=ClientConfig(tracking_uri=SIM_URL), rate_limit=FAST)
    spec = DeleteSpec(experiment_id="1", max_timestamp_millis=NOW_MS - 1, label="dry")
    outcome: list[BaseException] = []
    async with Engine(
        config,
        transport=httpx.MockTransport(answer),
        clock=clock,
        sleep=sleep,
        random=lambda: 0.5,
        wall_clock_ms=lambda: NOW_MS,
    ) as engine:

        async def plan() -> None:
            try:
                await engine.plan([spec])
            except Exception as error:  # what the caller of plan() sees
                outcome.append(error)

        async with anyio.create_task_group() as group:
            group.start_soon(plan)
            await turns_until(lambda: sleep.long_sleeps == 1)
            engine.stop_all()

    (error,) = outcome
    assert isinstance(error, async_trace_delete.TraceDeleteError)
    assert "'dry'" in str(error)
    assert "nothing was deleted" in str(error)
    assert clock.now - 1_000.0 < 10
