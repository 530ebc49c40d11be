"""Regression tests for unattended runs: one job per experiment, hard caps, answers re-checked,
exact accounting under lost answers, stops that wake every wait, throttling, searches through
the gate, bounded records, and transient faults that must not fail a run.

Each test names the case it guards, e.g. "(5)". Everything runs on the simulated server
(``tests/support/simulated_server.py``) with its fake clock and sleep: nothing sleeps for
real. ``random`` is fixed at 0.5 unless a test says otherwise. A name the fix added
(``ConflictingJobsError``) is looked up on the package where it is used, so on code without
it only the tests that need it fail.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

import async_trace_delete
from async_trace_delete import (
    ClientConfig,
    DeleteSpec,
    Engine,
    EngineConfig,
    Event,
    Hook,
    JobReport,
    JobStarted,
    JobState,
    RetryScheduled,
    Throttled,
)
from async_trace_delete._jobs import JobRunner
from tests.support.sim_engine import (
    FAST,
    NOW_MS,
    cutoff_spec,
    fixed_batches,
    make_engine,
    seeded,
    unavailable,
)
from tests.support.simulated_server import (
    BASE_MS,
    SIM_URL,
    TOO_MANY_VARIABLES,
    DeleteCall,
    FakeClock,
    Fault,
    LatencyModel,
    SimTrace,
    SimulatedServer,
    sim_traces,
)


def id_chunks(size: int) -> dict[str, Any]:
    """Config settings that make every ID chunk ``size`` IDs."""
    return {"initial_id_chunk": size, "max_id_chunk": size}


def ids_spec(experiment_id: str, traces: Sequence[SimTrace]) -> DeleteSpec:
    """A job deleting exactly these traces by ID."""
    return DeleteSpec(experiment_id=experiment_id, trace_ids=[t.trace_id for t in traces])


def throttled(retry_after: str | None = None, *, hold: anyio.Event | None = None) -> Fault:
    """A 429, with a ``Retry-After`` if given."""
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Fault(status=429, error_code="REQUEST_LIMIT_EXCEEDED", headers=headers, hold=hold)


def denied() -> Fault:
    """A 403 as MLflow's basic-auth app answers it (plain text)."""
    return Fault(status=403, text="Permission denied")


def gateway_lost() -> Fault:
    """A gateway's 502 after MLflow did the work: the answer is lost."""
    return Fault(status=502, text="<html>502 Bad Gateway</html>", apply_first=True)


def timeout_after_work() -> Fault:
    """A read timeout after the server did the work: the answer is lost."""
    return Fault(apply_first=True, raise_error=httpx.ReadTimeout)


def bracketed(job: JobReport, lost: int) -> bool:
    """What the server lost lies between the job's confirmed and possible deletions."""
    return job.deleted <= lost <= job.deleted + job.ambiguous


async def turns_until(condition: Callable[[], bool], turns: int = 10_000) -> None:
    """Let the other tasks run until ``condition`` holds (a bounded number of turns)."""
    for _ in range(turns):
        if condition():
            return
        await anyio.lowlevel.checkpoint()
    raise AssertionError("the condition never held")


class PatientSleep:
    """The fake clock's sleep, except that a sleep of ``long`` seconds or more first lets the
    other tasks run for ``turns`` turns before the clock moves by it, as a real sleep would.

    A stop can then cut it short, and the clock never moves by the part not slept.
    ``long_sleeps`` counts the long sleeps begun.
    """

    def __init__(self, clock: FakeClock, *, long: float, turns: int = 5_000) -> None:
        self.clock = clock
        self.long = long
        self.turns = turns
        self.long_sleeps = 0

    async def __call__(self, seconds: float) -> None:
        if seconds >= self.long:
            self.long_sleeps += 1
            for _ in range(self.turns):
                await anyio.lowlevel.checkpoint()
        await self.clock.sleep(seconds)


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
    """(9) stop_all() while a dry run waits out a search's ``Retry-After: 100`` ends the plan
    at once with a TraceDeleteError naming the job, not the engine's internal stop signal."""
    clock = FakeClock()
    sleep = PatientSleep(clock, long=5.0)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/experiments/get"):
            experiment = {"experiment_id": "1", "name": "e", "lifecycle_stage": "active"}
            return httpx.Response(200, json={"experiment": experiment})
        assert request.url.path.endswith("/traces/search"), request.url.path
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
