"""Regression tests for unattended runs: stops that wake every sleep (9), throttling (11),
and searches through the same gate as deletes (12).

Each test names the case it guards, e.g. "(5)". Everything runs on the simulated server
(``tests/support/simulated_server.py``) with its fake clock and sleep: nothing sleeps for
real. ``random`` is fixed at 0.5 unless a test says otherwise. The other cases are in the
other ``tests/engine/test_unattended_*.py`` files.
"""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from async_trace_delete import DeleteSpec, Event, JobState, RetryScheduled, Throttled
from tests.support.sim_engine import (
    FAST,
    PatientSleep,
    cutoff_spec,
    fixed_batches,
    id_chunks,
    ids_spec,
    make_engine,
    seeded,
    throttled,
    turns_until,
)
from tests.support.simulated_server import (
    DeleteCall,
    Fault,
    LatencyModel,
    SimulatedServer,
    sim_traces,
)

# -- (9) a stop wakes every sleep -----------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["handle.stop", "engine.stop_all"])
async def test_stop_wakes_a_retry_after_backoff(how: str) -> None:
    """(9) A stop during a 100 s Retry-After backoff ends the job at once: CANCELLED long
    before 100 s of fake time, with the first batch counted and nothing more sent."""
    server = SimulatedServer()
    experiment_id, cutoff = seeded(server, 5000)
    server.script(None, throttled("100"))
    sleep = PatientSleep(server.clock, long=5.0)
    start = server.clock()
    async with make_engine(server, sleep=sleep, **fixed_batches(1000)) as engine:
        handle = await engine.submit(cutoff_spec(experiment_id, cutoff))
        await turns_until(lambda: sleep.long_sleeps == 1)
        if how == "handle.stop":
            handle.stop()
        else:
            engine.stop_all()
        report = await handle.wait()
        ended = server.clock() - start
    assert ended < 10
    assert report.state is JobState.CANCELLED
    assert (report.deleted, report.ambiguous, report.calls, report.retries) == (1000, 0, 2, 1)
    assert len(server.deletes) == 2
    assert server.deleted(experiment_id) == 1000


@pytest.mark.asyncio
async def test_stop_wakes_a_job_waiting_out_the_shared_pause() -> None:
    """(9) One job's 429 (Retry-After: 100) pauses the other; stopping the other while it
    waits out that pause ends it at once, while the throttled one still backs off."""
    server = SimulatedServer()
    first_id, first_cutoff = seeded(server, 5000, tag=1)
    second_id, second_cutoff = seeded(server, 5000, tag=2)
    server.script(None, None, throttled("100"))
    events: list[Event] = []
    sleep = PatientSleep(server.clock, long=5.0)
    config: dict[str, Any] = {
        "max_concurrency": 2,
        "adaptive_concurrency": False,
        **fixed_batches(1000),
    }
    start = server.clock()
    async with make_engine(server, hooks=[events.append], sleep=sleep, **config) as engine:
        handles = {
            "a": await engine.submit(cutoff_spec(first_id, first_cutoff, label="a")),
            "b": await engine.submit(cutoff_spec(second_id, second_cutoff, label="b")),
        }
        await turns_until(lambda: sleep.long_sleeps == 2)  # one backs off, one is paused
        pushed_back = next(event.job for event in events if isinstance(event, Throttled))
        paused = "b" if pushed_back == "a" else "a"
        handles[paused].stop()
        paused_report = await handles[paused].wait()
        backing_off_meanwhile = not handles[pushed_back].done
        handles[pushed_back].stop()
        pushed_report = await handles[pushed_back].wait()
        ended = server.clock() - start
    assert paused_report.elapsed < 10
    assert backing_off_meanwhile
    assert ended < 10
    assert (paused_report.state, pushed_report.state) == (JobState.CANCELLED, JobState.CANCELLED)
    experiments = {"a": first_id, "b": second_id}
    for report in (paused_report, pushed_report):
        assert report.deleted == server.deleted(experiments[report.label])
        assert report.ambiguous == 0
    assert paused_report.retries == 0
    assert pushed_report.retries == 1
    assert sum(report.calls for report in (paused_report, pushed_report)) == len(server.deletes)


@pytest.mark.asyncio
async def test_stop_wakes_the_quiet_gap() -> None:
    """(9) A stop while the next call waits out a 50 s quiet gap (sleep_coefficient 50 after a
    1 s call) ends the job at once, with the one call counted."""
    server = SimulatedServer(latency=LatencyModel(fixed=1.0))
    experiment_id, cutoff = seeded(server, 5000)
    sleep = PatientSleep(server.clock, long=5.0)
    start = server.clock()
    config: dict[str, Any] = {"sleep_coefficient": 50.0, **fixed_batches(1000)}
    async with make_engine(server, sleep=sleep, **config) as engine:
        handle = await engine.submit(cutoff_spec(experiment_id, cutoff))
        await turns_until(lambda: sleep.long_sleeps == 1)
        handle.stop()
        report = await handle.wait()
        ended = server.clock() - start
    assert ended < 10
    assert report.state is JobState.CANCELLED
    assert (report.deleted, report.ambiguous, report.calls, report.retries) == (1000, 0, 1, 0)
    assert len(server.deletes) == 1
    assert server.deleted(experiment_id) == 1000


# -- (11) throttling ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_jitter_is_added_above_a_retry_after_floor() -> None:
    """(11a) Two jobs told ``Retry-After: 2`` wait 2 s plus their own jitter (draws 0.1 and 0.7
    of the 0.5 s cap: 2.05 and 2.35 s), not both exactly 2 s."""
    server = SimulatedServer()
    first_id, first_cutoff = seeded(server, 500, tag=1)
    second_id, second_cutoff = seeded(server, 500, tag=2)

    def first_call_throttled(call: DeleteCall) -> Fault | None:
        return throttled("2") if len(server.deletes_for(call.experiment_id)) == 1 else None

    server.fault_rule = first_call_throttled
    draws = itertools.cycle([0.1, 0.7])
    events: list[Event] = []
    async with make_engine(
        server, hooks=[events.append], random_source=lambda: next(draws)
    ) as engine:
        report = await engine.run(
            [
                cutoff_spec(first_id, first_cutoff, label="a"),
                cutoff_spec(second_id, second_cutoff, label="b"),
            ]
        )
    retries = [event for event in events if isinstance(event, RetryScheduled)]
    assert sorted(event.job for event in retries) == ["a", "b"]
    delays = sorted(event.delay for event in retries)
    assert delays == pytest.approx([2.05, 2.35])
    assert all(delay >= 2 for delay in delays)
    assert [job.state for job in report.jobs] == [JobState.COMPLETED] * 2
    assert [job.deleted for job in report.jobs] == [500, 500]


@pytest.mark.asyncio
async def test_four_simultaneous_429s_halve_the_shared_rate_once() -> None:
    """(11b) Four 429s answering four calls in flight at once halve the shared rate once (to
    rate/2), not four times (to rate/16)."""
    server = SimulatedServer()
    traces = sim_traces(40)
    experiment_id = server.add_experiment("throttled", traces)
    gate = anyio.Event()
    faults = [throttled(hold=gate) for _ in range(4)]
    server.script(*faults)
    events: list[Event] = []
    config: dict[str, Any] = {"max_concurrency": 4, "adaptive_concurrency": False, **id_chunks(10)}
    async with make_engine(server, hooks=[events.append], **config) as engine:
        handle = await engine.submit(ids_spec(experiment_id, traces))
        for fault in faults:
            await fault.arrived.wait()
        server.clock.advance(0.5)  # the answers come back after all four were sent
        gate.set()
        report = await handle.wait()
        rate = engine._require_open().scheduler.rate
    rates = [event.rate for event in events if isinstance(event, Throttled)]
    assert rates == [FAST / 2] * 4
    assert rate == FAST / 2  # four successes since: not yet stepped back up
    assert (report.state, report.deleted, report.calls) == (JobState.COMPLETED, 40, 8)


@pytest.mark.asyncio
async def test_a_cut_rate_spaces_the_next_call_starts() -> None:
    """(11c) After a 429 halves the rate, consecutive call starts (fake clock) are at least
    1/rate apart: the next call is not let through at once."""
    server = SimulatedServer()
    experiment_id, cutoff = seeded(server, 2000)
    server.script(None, throttled())
    events: list[Event] = []
    async with make_engine(server, hooks=[events.append], **fixed_batches(100)) as engine:
        report = await engine.run([cutoff_spec(experiment_id, cutoff)])
    assert [event.rate for event in events if isinstance(event, Throttled)] == [FAST / 2]
    starts = [call.started_at for call in server.deletes]
    # Calls 2 to 7 (the retry, then four more) start at the cut rate: it steps up after five
    # successes.
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts[2:8])]
    assert len(gaps) == 5
    assert min(gaps) >= (2 / FAST) * (1 - 1e-6)
    assert report.jobs[0].deleted == server.deleted(experiment_id) == 2000


# -- (12) searches go through the gate ------------------------------------------------------------


@pytest.mark.asyncio
async def test_searches_wait_out_the_shared_pause() -> None:
    """(12) After a 429 (Retry-After: 5) on a delete pauses everyone, no search of the
    filter job starts before that pause ends."""
    server = SimulatedServer()
    experiment_id = server.add_experiment("paged", sim_traces(1000, state="ERROR"))
    server.script(throttled("5"))
    pauses: list[tuple[int, float]] = []  # (calls logged so far, end of the pause)

    def on_pause(event: Event) -> None:
        if isinstance(event, Throttled):
            pauses.append((len(server.calls), server.clock() + event.pause))

    sleep = PatientSleep(server.clock, long=1.0, turns=200)
    config: dict[str, Any] = {
        "search_page_size": 50,
        "max_concurrency": 4,
        "adaptive_concurrency": False,
        **id_chunks(50),
    }
    spec = DeleteSpec(experiment_id=experiment_id, filter_string="status = 'ERROR'")
    async with make_engine(server, hooks=[on_pause], sleep=sleep, **config) as engine:
        report = await engine.run([spec])
    assert len(pauses) == 1
    logged, pause_end = pauses[0]
    later = [call for call in server.calls[logged:] if call.kind == "search"]
    assert later
    assert [call.started_at for call in later if call.started_at < pause_end] == []
    job = report.jobs[0]
    assert (job.state, job.deleted) == (JobState.COMPLETED, 1000)
    assert server.remaining(experiment_id) == []


@pytest.mark.asyncio
async def test_searches_take_an_in_flight_slot_like_deletes() -> None:
    """(12) With max_concurrency=1 a filter job's searches never overlap its deletes: no
    call reaches the server while another is in flight."""
    server = SimulatedServer()
    server.in_flight_turns = 5  # every call stays in flight a while: overlaps can happen
    experiment_id = server.add_experiment("paged", sim_traces(300, state="ERROR"))
    config: dict[str, Any] = {
        "search_page_size": 50,
        "max_concurrency": 1,
        "adaptive_concurrency": False,
        **id_chunks(50),
    }
    spec = DeleteSpec(experiment_id=experiment_id, filter_string="status = 'ERROR'")
    async with make_engine(server, **config) as engine:
        report = await engine.run([spec])
    kinds = [call.kind for call in server.calls]
    assert kinds.count("search") >= 6
    assert kinds.count("delete") >= 6
    assert [call.kind for call in server.calls if call.concurrent] == []
    assert (report.jobs[0].state, report.jobs[0].deleted) == (JobState.COMPLETED, 300)
