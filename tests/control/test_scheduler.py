"""Tests of the engine-wide gate: fair slots, cancellation, the limit it enforces, the pace.

The scheduler runs on a virtual clock (time moves only when every task waits), with a fixed
or a scripted concurrency limit: no real sleeping, no huge rate.
"""

from __future__ import annotations

import asyncio
import itertools

import anyio
import pytest

from async_trace_delete import ConcurrencyChanged, Event, FixedLimit, Outcome, Throttled
from async_trace_delete._pacing import ClockPacer
from async_trace_delete._scheduler import CallKind, Scheduler
from tests.support.sim_engine import cutoff_spec, fixed_batches, make_engine, seeded
from tests.support.simulated_server import SimulatedServer
from tests.support.virtual_clock import VirtualClock


class ScriptedLimit:
    """A concurrency limit that moves only when the test says so (a ConcurrencyLimit)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.next_limit = limit

    def record(
        self, *, now: float, deleted: int, latency: float, outcome: Outcome, waiting: int
    ) -> int:
        """Adopt the limit the test scripted."""
        self.limit = self.next_limit
        return self.limit


def make_scheduler(
    limit: FixedLimit | ScriptedLimit,
    clock: VirtualClock,
    events: list[Event] | None = None,
    *,
    rate: float = 5.0,
) -> Scheduler:
    """A scheduler on ``clock`` pacing at ``rate`` calls/s."""
    sink = events if events is not None else []
    return Scheduler(
        limit=limit,
        pacer=ClockPacer(rate, clock=clock, sleep=clock.sleep),
        clock=clock,
        sleep=clock.sleep,
        emit=sink.append,
        origin=clock(),
    )


# -- fair slots --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_freed_slot_goes_to_the_next_job_round_robin() -> None:
    """With one slot, a job queued behind three calls of another gets the second turn."""
    clock = VirtualClock()
    scheduler = make_scheduler(FixedLimit(1), clock)
    order: list[str] = []

    async def call(job: str, name: str) -> None:
        await scheduler.acquire(job)
        order.append(name)
        scheduler.release()

    await scheduler.acquire("holder")
    async with anyio.create_task_group() as group:
        for job, name in [("big", "big-1"), ("big", "big-2"), ("big", "big-3"), ("small", "s")]:
            group.start_soon(call, job, name)
        await anyio.wait_all_tasks_blocked()
        assert scheduler.waiting == 4
        scheduler.release()
    assert order == ["big-1", "s", "big-2", "big-3"]
    assert (scheduler.in_flight, scheduler.waiting) == (0, 0)


@pytest.mark.asyncio
async def test_a_waiter_cancelled_before_its_turn_leaves_no_trace() -> None:
    """A cancelled waiter leaves the queue at once; the freed slot goes to the next one."""
    clock = VirtualClock()
    scheduler = make_scheduler(FixedLimit(1), clock)
    order: list[str] = []
    scope = anyio.CancelScope()

    async def cancelled() -> None:
        with scope:
            await scheduler.acquire("a")
            order.append("a")  # never: it is cancelled before its turn

    async def waiting() -> None:
        await scheduler.acquire("b")
        order.append("b")
        scheduler.release()

    await scheduler.acquire("holder")
    async with anyio.create_task_group() as group:
        group.start_soon(cancelled)
        group.start_soon(waiting)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
        await anyio.wait_all_tasks_blocked()
        assert scheduler.waiting == 1  # only b is left
        scheduler.release()
    assert order == ["b"]
    assert (scheduler.in_flight, scheduler.waiting) == (0, 0)


@pytest.mark.asyncio
async def test_a_waiter_cancelled_after_its_grant_hands_the_slot_on() -> None:
    """A waiter granted the slot but cancelled before it ran gives the slot to the next job.

    anyio delivers a scope's cancel at the next checkpoint, after ``acquire`` returned (the
    caller's ``finally`` gives the slot back); an asyncio ``Task.cancel()`` (``asyncio.timeout``
    around the engine) arrives with the grant itself, inside ``acquire``.
    """
    clock = VirtualClock()
    scheduler = make_scheduler(FixedLimit(1), clock)
    order: list[str] = []

    async def next_job() -> None:
        await scheduler.acquire("b")
        order.append("b")
        scheduler.release()

    await scheduler.acquire("holder")
    granted = asyncio.create_task(scheduler.acquire("a"))
    following = asyncio.create_task(next_job())
    await anyio.wait_all_tasks_blocked()
    scheduler.release()  # grants a ...
    assert (scheduler.in_flight, scheduler.waiting) == (1, 1)
    granted.cancel()  # ... whose cancel arrives before it could run
    with anyio.fail_after(5):  # a lost slot would leave b waiting forever
        await following
    with pytest.raises(asyncio.CancelledError):
        await granted
    assert order == ["b"]
    assert (scheduler.in_flight, scheduler.waiting) == (0, 0)


# -- the limit -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_raised_limit_lets_waiters_in_and_is_reported() -> None:
    """When the limit rises, waiting calls get the new slots at once, and an event says so."""
    clock = VirtualClock()
    limit = ScriptedLimit(1)
    events: list[Event] = []
    scheduler = make_scheduler(limit, clock, events)
    admitted: list[str] = []

    async def call(name: str) -> None:
        await scheduler.acquire(name)
        admitted.append(name)

    await scheduler.acquire("first")
    async with anyio.create_task_group() as group:
        group.start_soon(call, "second")
        group.start_soon(call, "third")
        await anyio.wait_all_tasks_blocked()
        assert admitted == []
        limit.next_limit = 3
        scheduler.record(deleted=10, latency=0.5, outcome=Outcome.OK)
    assert admitted == ["second", "third"]
    assert scheduler.in_flight == 3
    changes = [event for event in events if isinstance(event, ConcurrencyChanged)]
    assert [(event.old, event.new) for event in changes] == [(1, 3)]


def test_a_fixed_limit_never_moves() -> None:
    """A fixed limit ignores every result, overloads included."""
    clock = VirtualClock()
    events: list[Event] = []
    scheduler = make_scheduler(FixedLimit(4), clock, events)
    for outcome in Outcome:
        scheduler.record(deleted=0, latency=1.0, outcome=outcome)
    assert scheduler.limit == 4
    assert events == []


# -- the shared pace ---------------------------------------------------------------------------


async def paced_starts(scheduler: Scheduler, clock: VirtualClock, calls: int) -> list[float]:
    """Start ``calls`` calls at once through ``pace``; return their start times."""
    starts: list[float] = []

    async def call() -> None:
        await scheduler.pace()
        starts.append(clock())

    await clock.run(*[call] * calls)
    return starts


@pytest.mark.asyncio
async def test_pace_spaces_calls_at_the_configured_rate() -> None:
    """At 5 calls/s, six calls ready at once start 0.2 s apart on the engine's clock."""
    clock = VirtualClock()
    scheduler = make_scheduler(FixedLimit(8), clock, rate=5.0)
    starts = await paced_starts(scheduler, clock, 6)
    assert starts == pytest.approx([100.0 + 0.2 * index for index in range(6)])


@pytest.mark.asyncio
async def test_a_push_back_pauses_everyone_then_halves_the_pace() -> None:
    """A 429 pauses every call for its pause, and the calls after it start at half the rate."""
    clock = VirtualClock()
    events: list[Event] = []
    scheduler = make_scheduler(FixedLimit(8), clock, events, rate=5.0)
    scheduler.push_back(job="a", retry_after=2.0, pause=2.0, sent_at=None)
    starts = await paced_starts(scheduler, clock, 4)
    assert starts == pytest.approx([102.0, 102.4, 102.8, 103.2])
    assert [event.rate for event in events if isinstance(event, Throttled)] == [2.5]
    assert scheduler.rate == 2.5


@pytest.mark.asyncio
async def test_a_pause_that_begins_during_the_pace_holds_the_call() -> None:
    """A call waiting for its start does not go while a pause that began meanwhile runs."""
    clock = VirtualClock()
    scheduler = make_scheduler(FixedLimit(8), clock, rate=5.0)
    starts: list[float] = []

    async def call() -> None:
        await scheduler.pace()
        starts.append(clock())

    async def push_back_soon() -> None:
        await clock.sleep(0.1)  # while the second call waits for 100.2
        scheduler.push_back(job="a", retry_after=None, pause=1.0, sent_at=None)

    await clock.run(call, call, push_back_soon)
    assert starts == pytest.approx([100.0, 101.1])


@pytest.mark.asyncio
async def test_the_rate_recovers_after_five_successes() -> None:
    """After a cut, five successes step the pace back up by half."""
    clock = VirtualClock()
    scheduler = make_scheduler(FixedLimit(8), clock, rate=8.0)
    scheduler.push_back(job="a", retry_after=None, pause=0.0, sent_at=None)
    scheduler.push_back(job="a", retry_after=None, pause=0.0, sent_at=None)
    assert scheduler.rate == 2.0
    for _ in range(5):
        scheduler.record(deleted=1, latency=0.0, outcome=Outcome.OK)
    assert scheduler.rate == 3.0


@pytest.mark.asyncio
async def test_the_engine_paces_on_its_own_clock_without_a_huge_rate() -> None:
    """An engine at rate_limit=5 on the simulated server's fake clock sends one call every
    0.2 s of fake time, and the test takes no real time for it."""
    server = SimulatedServer()
    experiment_id, cutoff = seeded(server, 1000)
    async with make_engine(server, rate_limit=5.0, **fixed_batches(100)) as engine:
        report = await engine.run([cutoff_spec(experiment_id, cutoff)])
    assert [call.kind for call in server.calls] == ["get"] + ["delete"] * 11  # the last: 0
    starts = [call.started_at for call in server.deletes]
    spacing = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert spacing == pytest.approx([0.2] * 10)  # the lookup before them is paced apart
    assert report.jobs[0].deleted == server.deleted(experiment_id) == 1000


# -- reads -------------------------------------------------------------------------------------


def read_scheduler(clock: VirtualClock, *, limit: int = 1, read_slots: int = 4) -> Scheduler:
    """A scheduler whose learnt limit is ``limit`` and whose reads may use ``read_slots``."""
    return Scheduler(
        limit=FixedLimit(limit),
        pacer=ClockPacer(5.0, clock=clock, sleep=clock.sleep),
        read_pacer=ClockPacer(50.0, clock=clock, sleep=clock.sleep),
        read_slots=read_slots,
        clock=clock,
        sleep=clock.sleep,
        emit=lambda event: None,
        origin=clock(),
    )


@pytest.mark.asyncio
async def test_reads_use_every_slot_while_no_delete_is_in_flight() -> None:
    """With a learnt limit of 1 and 4 read slots, four reads are in flight at once."""
    clock = VirtualClock()
    scheduler = read_scheduler(clock)
    most = 0

    async def read(job: str) -> None:
        nonlocal most
        await scheduler.acquire(job, read=True)
        most = max(most, scheduler.in_flight)
        await clock.sleep(1.0)
        scheduler.release(read=True)

    await clock.run(*[lambda name=f"r{index}": read(name) for index in range(8)])
    assert most == 4
    assert clock() == pytest.approx(102.0)  # two rounds of four, from 100


@pytest.mark.asyncio
async def test_a_read_waits_for_the_learnt_limit_while_a_delete_is_in_flight() -> None:
    """A delete in flight holds the learnt limit (1): a read waits for it, never overlaps."""
    clock = VirtualClock()
    scheduler = read_scheduler(clock)
    overlaps: list[int] = []
    await scheduler.acquire("deleter")

    async def read() -> None:
        await scheduler.acquire("reader", read=True)
        overlaps.append(scheduler.in_flight)
        scheduler.release(read=True)

    async def finish_delete() -> None:
        await clock.sleep(1.0)
        scheduler.release()

    await clock.run(read, finish_delete)
    assert overlaps == [1]  # the read ran alone, after the delete
    assert clock() == pytest.approx(101.0)


@pytest.mark.asyncio
async def test_a_delete_waits_for_reads_beyond_the_learnt_limit() -> None:
    """Reads in the extra slots keep a delete out until they are below the learnt limit."""
    clock = VirtualClock()
    scheduler = read_scheduler(clock, limit=2)
    for index in range(3):
        await scheduler.acquire(f"r{index}", read=True)
    started: list[tuple[float, int]] = []

    async def delete() -> None:
        await scheduler.acquire("deleter")
        started.append((clock(), scheduler.in_flight))
        scheduler.release()

    async def reads_finish() -> None:
        for _ in range(3):
            await clock.sleep(1.0)
            scheduler.release(read=True)

    await clock.run(delete, reads_finish)
    assert [(round(at, 6), in_flight) for at, in_flight in started] == [(102.0, 2)]  # two ended


@pytest.mark.asyncio
async def test_reads_and_deletes_have_their_own_rates_and_share_a_cut() -> None:
    """Reads are spaced at the read rate, deletes at theirs; a push-back halves both."""
    clock = VirtualClock()
    scheduler = read_scheduler(clock, limit=8, read_slots=8)
    reads: list[float] = []
    deletes: list[float] = []

    async def paced(kind: CallKind, starts: list[float], count: int) -> None:
        for _ in range(count):
            await scheduler.pace(kind)
            starts.append(clock())

    await clock.run(
        lambda: paced(CallKind.READ, reads, 5), lambda: paced(CallKind.DELETE, deletes, 3)
    )
    assert [b - a for a, b in itertools.pairwise(reads)] == pytest.approx([0.02] * 4)
    assert [b - a for a, b in itertools.pairwise(deletes)] == pytest.approx([0.2] * 2)
    scheduler.push_back(job="a", retry_after=None, pause=0.0, sent_at=None)
    reads.clear()
    await clock.run(lambda: paced(CallKind.READ, reads, 3))
    assert [b - a for a, b in itertools.pairwise(reads)] == pytest.approx([0.04] * 2)
