"""Unit tests of the Engine: retries, fairness, adaptive batches and the shared rate limit.

Every test but the rate-limit one runs on a simulated server (``tests/support/
simulated_server.py``) with a fake clock and a fake sleep: nothing sleeps, and latencies are
what the server's latency model says. ``random`` is fixed at 0.5, so backoff delays are exact.
Caps, cancellation, hooks and status are ``tests/engine/test_engine_lifecycle.py``.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import anyio
import httpx
import pytest

from async_trace_delete import (
    ClientConfig,
    ConnectError,
    DeleteSpec,
    Engine,
    EngineConfig,
    Event,
    JobState,
    RetryScheduled,
    Throttled,
)
from async_trace_delete._calls import FIRST_CONTACT_SECONDS
from tests.support.sim_engine import (
    FAST,
    NOW_MS,
    cutoff_spec,
    fixed_batches,
    make_engine,
    seeded,
    unavailable,
)
from tests.support.simulated_server import SIM_URL, Fault, LatencyModel, SimulatedServer, sim_traces

# -- retries ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_backoff_delays_are_exact_full_jitter_with_fixed_random() -> None:
    """Three 503s are retried after 0.25, 0.5 and 1.0 s (half of the doubling cap each)."""
    server = SimulatedServer()
    experiment_id, cutoff = seeded(server, 500)
    server.script(unavailable(), unavailable(), unavailable())
    async with make_engine(server, **fixed_batches(1000)) as engine:
        report = await engine.run([cutoff_spec(experiment_id, cutoff)])
    job = report.jobs[0]
    # The lookup is a read, paced apart: the first delete does not wait for it.
    assert server.clock.sleeps == pytest.approx([0.25, 0.5, 1.0])
    assert job.state is JobState.COMPLETED
    assert (job.deleted, job.retries, job.calls) == (500, 3, 4)
    assert server.remaining(experiment_id) == []


@pytest.mark.asyncio
async def test_retry_after_is_a_floor_on_the_backoff() -> None:
    """A 429 with ``Retry-After: 3`` makes the engine wait 3 s plus jitter before the retry
    (the jitter at 0.5 of the first attempt's 0.5 s cap: 0.25 s above the floor)."""
    server = SimulatedServer()
    experiment_id, cutoff = seeded(server, 500)
    server.script(Fault(status=429, error_code="RATE_LIMITED", headers={"Retry-After": "3"}))
    events: list[Event] = []
    async with make_engine(server, hooks=[events.append]) as engine:
        report = await engine.run([cutoff_spec(experiment_id, cutoff)])
    assert sum(server.clock.sleeps) == pytest.approx(3.25)  # the wait only
    retries = [event for event in events if isinstance(event, RetryScheduled)]
    assert [event.delay for event in retries] == [3.25]
    assert server.deletes[1].started_at - server.deletes[0].started_at >= 3.0
    assert report.jobs[0].deleted == 500


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        (Fault(status=400, error_code="INVALID_PARAMETER_VALUE"), "InvalidParameterError"),
        (
            Fault(status=401, text="<html>Unauthorized</html>", headers={"WWW-Authenticate": "x"}),
            "AuthenticationError",
        ),
        (Fault(status=403, text="Permission denied"), "PermissionDeniedError"),
        (Fault(status=404, error_code="RESOURCE_DOES_NOT_EXIST"), "NotFoundError"),
    ],
    ids=["400", "401", "403", "404"],
)
async def test_client_errors_are_not_retried(fault: Fault, error_type: str) -> None:
    """A 400/401/403/404 answer fails the job after exactly one call, with its typed error."""
    server = SimulatedServer()
    experiment_id, cutoff = seeded(server, 500)
    server.fault_rule = lambda call: fault
    async with make_engine(server) as engine:
        report = await engine.run([cutoff_spec(experiment_id, cutoff)])
    job = report.jobs[0]
    assert len(server.deletes) == 1
    assert job.state is JobState.FAILED
    assert job.error_type == error_type
    assert (job.calls, job.retries, job.deleted) == (1, 0, 0)
    assert server.clock.sleeps == []  # no wait: the lookup is paced apart from deletes
    assert len(server.remaining(experiment_id)) == 500


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["ids", "matching"])
async def test_id_and_matching_jobs_report_the_typed_error(mode: str) -> None:
    """A 403 on an ID or matching job fails it after one call with PermissionDeniedError."""
    server = SimulatedServer()
    traces = sim_traces(100)
    experiment_id = server.add_experiment("denied", traces)
    server.fault_rule = lambda call: Fault(status=403, text="Permission denied")
    spec = (
        DeleteSpec(experiment_id=experiment_id, trace_ids=[t.trace_id for t in traces])
        if mode == "ids"
        else DeleteSpec(experiment_id=experiment_id, filter_string="status = 'OK'")
    )
    async with make_engine(server) as engine:
        report = await engine.run([spec])
    job = report.jobs[0]
    assert (job.state, job.calls) == (JobState.FAILED, 1)
    assert len(server.deletes) == 1
    assert job.error_type == "PermissionDeniedError"


@pytest.mark.asyncio
async def test_a_sick_job_fails_on_no_progress_while_the_other_finishes() -> None:
    """One experiment always answers 503: past the spent budget its retries go on, slower,
    until it made no progress for progress_timeout; the other job completes."""
    server = SimulatedServer(latency=LatencyModel(fixed=0.05))
    sick_id, sick_cutoff = seeded(server, 800, tag=1)
    healthy_id, healthy_cutoff = seeded(server, 3000, 10, tag=2)
    server.fault_rule = lambda call: unavailable() if call.experiment_id == sick_id else None
    config: dict[str, Any] = {
        "retry_budget": 3,
        "retry_budget_ratio": 0.0,
        "progress_timeout": 120.0,
        **fixed_batches(500),
    }
    events: list[Event] = []
    async with make_engine(server, hooks=[events.append], **config) as engine:
        report = await engine.run(
            [cutoff_spec(sick_id, sick_cutoff), cutoff_spec(healthy_id, healthy_cutoff)]
        )
    sick, healthy = report.jobs
    assert sick.state is JobState.FAILED
    assert sick.error_type == "NoProgressError"
    assert sick.error is not None
    assert "progress_timeout" in sick.error
    assert sick.retries > 3  # the spent budget did not end it
    assert sick.calls == sick.retries + 1
    assert len(server.deletes_for(sick_id)) == sick.calls
    assert len(server.remaining(sick_id)) == 800
    throttled = [event for event in events if isinstance(event, Throttled)]
    assert throttled  # the spent budget and the 503s slowed everyone down
    assert healthy.state is JobState.COMPLETED
    assert healthy.deleted == server.deleted(healthy_id) == 3000
    assert len(server.remaining(healthy_id)) == 10


# -- fairness -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_small_job_is_interleaved_with_a_large_id_job() -> None:
    """With one slot, a small job submitted after a 200-chunk job alternates with it."""
    server = SimulatedServer()
    large_traces = sim_traces(2000, tag=1)
    small_traces = sim_traces(30, tag=2)
    large_id = server.add_experiment("large", large_traces)
    small_id = server.add_experiment("small", small_traces)
    fifth = Fault()
    server.script(None, None, None, None, fifth)
    config: dict[str, Any] = {"max_concurrency": 1, "initial_id_chunk": 10, "max_id_chunk": 10}
    async with make_engine(server, **config) as engine:
        large = await engine.submit(
            DeleteSpec(experiment_id=large_id, trace_ids=[t.trace_id for t in large_traces])
        )
        await fifth.arrived.wait()
        small = await engine.submit(
            DeleteSpec(experiment_id=small_id, trace_ids=[t.trace_id for t in small_traces])
        )
        small_report = await small.wait()
        large_calls_meanwhile = len(server.deletes_for(large_id))
        large_still_running = not large.done
        large_report = await large.wait()
    order = [call.experiment_id for call in server.deletes]
    small_positions = [index for index, exp in enumerate(order) if exp == small_id]
    # Once the small job asks for a slot it gets every other one: L S L S L S.
    assert len(small_positions) == 3
    assert small_positions[-1] - small_positions[0] == 4
    assert large_still_running
    assert large_calls_meanwhile < 20
    assert (small_report.deleted, large_report.deleted) == (30, 2000)
    assert large_report.calls == 200


# -- adaptive batch size --------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("model", "target"),
    [
        (LatencyModel(fixed=0.3, per_trace=1e-4), 1.0),
        (LatencyModel(fixed=0.3, per_trace=1e-4), 0.5),
        (LatencyModel(fixed=0.2, per_trace=5e-5, quadratic=2e-9), 1.0),
    ],
    ids=["linear-1s", "linear-0.5s", "quadratic-1s"],
)
async def test_batch_size_converges_to_the_latency_target(
    model: LatencyModel, target: float
) -> None:
    """On a server costing ``a + b*n + c*n**2`` the batch settles where a call takes the target."""
    server = SimulatedServer(latency=model)
    ideal = model.size_for(target)
    total = round(ideal * 12)  # enough for ten or more full batches at the ideal size
    experiment_id, cutoff = seeded(server, total)
    async with make_engine(server, target_latency=target, max_concurrency=1) as engine:
        report = await engine.run([cutoff_spec(experiment_id, cutoff)])
    job = report.jobs[0]
    full = [batch for batch in job.batches if batch.deleted == batch.requested]
    tail = full[-5:]
    print(
        f"\nconvergence {model} target={target}s ideal={ideal:.0f}: "
        f"sizes {list(job.batch_sizes[:8])}... settled at {tail[-1].requested} "
        f"({tail[-1].latency:.3f}s per call)"
    )
    assert job.deleted == total
    assert len(full) >= 10
    # The sizer keeps a 5% dead band on latency: that is where it stops, near the ideal size.
    assert all(abs(batch.latency - target) <= 0.06 * target for batch in tail)
    assert all(abs(batch.requested - ideal) <= 0.15 * ideal for batch in tail)
    settled = next(i for i, b in enumerate(full) if abs(b.latency - target) <= 0.06 * target)
    assert settled <= 8


@pytest.mark.asyncio
async def test_a_429_leaves_the_batch_a_timeout_halves_it() -> None:
    """A 429 says "slow down", not "smaller": the retry asks for the same size (the shared
    rate is what slows); a timeout says the call was too big for its time: half."""
    server = SimulatedServer(latency=LatencyModel(fixed=0.5, per_trace=0.0005))
    experiment_id, cutoff = seeded(server, 10_000)
    server.script(None, Fault(status=429, error_code="RATE_LIMITED"))
    async with make_engine(server) as engine:
        report = await engine.run([cutoff_spec(experiment_id, cutoff)])
    sizes = report.jobs[0].batch_sizes
    assert sizes[:3] == (1000, 1000, 1000)
    assert report.jobs[0].deleted == 10_000


@pytest.mark.asyncio
async def test_too_many_sql_variables_halves_the_batch_and_sets_a_ceiling() -> None:
    """A 503 "too many SQL variables" halves the batch, and later calls never exceed that."""
    server = SimulatedServer(latency=LatencyModel(fixed=0.01), max_sql_variables=5000)
    experiment_id, cutoff = seeded(server, 60_000, 5)
    async with make_engine(server) as engine:
        report = await engine.run([cutoff_spec(experiment_id, cutoff)])
    job = report.jobs[0]
    failed = [i for i, batch in enumerate(job.batches) if batch.outcome == "too_large"]
    assert len(failed) == 1
    too_large = job.batches[failed[0]].requested
    assert too_large > 5000
    later = [batch.requested for batch in job.batches[failed[0] + 1 :]]
    assert later[0] <= too_large // 2
    assert max(later) <= too_large // 2
    assert job.state is JobState.COMPLETED
    assert job.deleted == server.deleted(experiment_id) == 60_000
    assert len(server.remaining(experiment_id)) == 5


# -- the shared rate limit (real time) -------------------------------------------------------


@pytest.mark.asyncio
async def test_rate_limit_holds_over_any_half_second() -> None:
    """At rate_limit=20 a zero-latency server sees at most 11 calls in any 0.5 s window."""
    stamps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/experiments/get"):
            return httpx.Response(200, json={"experiment": {"experiment_id": "1", "name": "e"}})
        stamps.append(time.monotonic())
        return httpx.Response(200, json={"traces_deleted": 1})

    config = EngineConfig(
        client=ClientConfig(tracking_uri=SIM_URL), rate_limit=20, **fixed_batches(1)
    )
    async with Engine(config, transport=httpx.MockTransport(handler)) as engine:
        with anyio.move_on_after(1.1):
            await engine.run([cutoff_spec("1", NOW_MS - 1)])
    windows = [sum(1 for t in stamps if start <= t < start + 0.5) for start in stamps]
    assert max(windows) <= 11
    assert 10 <= len(stamps) <= 24  # a loaded machine may send fewer, never more


@pytest.mark.asyncio
async def test_a_lost_connection_after_the_server_answered_is_retried_past_first_contact() -> None:
    """The lookup answered; then eight refused connections (a restart, 60+ s of backoff):
    retried until the server is back, not given up after FIRST_CONTACT_SECONDS."""
    server = SimulatedServer()
    experiment_id, cutoff = seeded(server, 500)
    server.script(*[Fault(raise_error=httpx.ConnectError) for _ in range(8)])
    async with make_engine(server, **fixed_batches(1000)) as engine:
        report = await engine.run([cutoff_spec(experiment_id, cutoff)])
    job = report.jobs[0]
    assert sum(server.clock.sleeps) > FIRST_CONTACT_SECONDS
    assert (job.state, job.deleted, job.retries) == (JobState.COMPLETED, 500, 8)
    assert server.remaining(experiment_id) == []


@pytest.mark.asyncio
async def test_a_server_never_reached_is_given_up_after_first_contact_seconds() -> None:
    """Every request refused from the start: the run fails within FIRST_CONTACT_SECONDS of
    the engine's clock with the ConnectError (not after progress_timeout)."""
    server = SimulatedServer()
    experiment_id, cutoff = seeded(server, 500)

    async def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    engine = Engine(
        EngineConfig(client=ClientConfig(tracking_uri=SIM_URL), rate_limit=FAST),
        transport=httpx.MockTransport(refuse),
        clock=server.clock,
        sleep=server.clock.sleep,
        random=lambda: 0.5,
        wall_clock_ms=lambda: NOW_MS,
    )
    started = server.clock()
    async with engine:
        with pytest.raises(ConnectError):
            await engine.run([cutoff_spec(experiment_id, cutoff)])
    assert server.clock() - started <= FIRST_CONTACT_SECONDS
    assert server.remaining(experiment_id) != []


@pytest.mark.asyncio
async def test_fast_deletes_leave_other_writers_at_least_min_sleep() -> None:
    """Deletes of 10 ms each are followed by min_sleep (0.1 s) of quiet, not 1 ms: SQLite's
    busy handler polls at up to 100 ms, and a shorter gap lets the next delete take the lock
    again before a waiting writer looks."""
    server = SimulatedServer(latency=LatencyModel(fixed=0.01))
    experiment_id, cutoff = seeded(server, 1_000)
    async with make_engine(server, **fixed_batches(100)) as engine:
        report = await engine.run([cutoff_spec(experiment_id, cutoff)])
    starts = [call.started_at for call in server.deletes]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert len(gaps) >= 9
    assert min(gaps) >= 0.01 + 0.1 - 1e-9
    assert report.jobs[0].deleted == 1_000


@pytest.mark.asyncio
async def test_min_sleep_zero_keeps_only_the_coefficient() -> None:
    """min_sleep=0: the gap after a 10 ms delete is 0.1 x 10 ms."""
    server = SimulatedServer(latency=LatencyModel(fixed=0.01))
    experiment_id, cutoff = seeded(server, 500)
    async with make_engine(server, min_sleep=0.0, **fixed_batches(100)) as engine:
        await engine.run([cutoff_spec(experiment_id, cutoff)])
    starts = [call.started_at for call in server.deletes]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert max(gaps) < 0.05
