"""Tests of the engine-wide gate: fair slots, cancellation, the limit it enforces.

The scheduler runs with a fixed or a scripted concurrency limit.
"""

from __future__ import annotations

import asyncio
import time

import anyio
import pytest

from async_trace_delete import ConcurrencyChanged, Event, Outcome
from async_trace_delete._concurrency import FixedLimit
from async_trace_delete._scheduler import Scheduler


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
    limit: FixedLimit | ScriptedLimit, events: list[Event] | None = None
) -> Scheduler:
    """A scheduler enforcing ``limit``."""
    sink = events if events is not None else []
    return Scheduler(
        rate_limit=10_000.0,
        limit=limit,
        clock=time.monotonic,
        sleep=anyio.sleep,
        emit=sink.append,
    )


# -- fair slots --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_freed_slot_goes_to_the_next_job_round_robin() -> None:
    """With one slot, a job queued behind three calls of another gets the second turn."""
    scheduler = make_scheduler(FixedLimit(1))
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
    scheduler = make_scheduler(FixedLimit(1))
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
    scheduler = make_scheduler(FixedLimit(1))
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
    limit = ScriptedLimit(1)
    events: list[Event] = []
    scheduler = make_scheduler(limit, events)
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
    events: list[Event] = []
    scheduler = make_scheduler(FixedLimit(4), events)
    for outcome in Outcome:
        scheduler.record(deleted=0, latency=1.0, outcome=outcome)
    assert scheduler.limit == 4
    assert events == []
