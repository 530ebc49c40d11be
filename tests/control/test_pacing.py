"""Tests of the shared rate: the pure throttle with plain numbers, the pacers on a virtual clock.

The injected-clock pacer is run at realistic rates (5 calls/s) on a clock that only moves
when every task waits: no huge rate, no real sleeping.
"""

from __future__ import annotations

import itertools
import math
import time

import anyio
import pytest

from async_trace_delete._exceptions import UsageError
from async_trace_delete._pacing import ClockPacer, LimiterPacer, RateThrottle, pacer_for
from tests.support.virtual_clock import VirtualClock


def gaps(starts: list[float]) -> list[float]:
    """Seconds between consecutive starts."""
    return [later - earlier for earlier, later in itertools.pairwise(starts)]


# -- the throttle (pure) ---------------------------------------------------------------------


def test_push_back_halves_the_rate_once_per_episode() -> None:
    """Push-backs of calls sent before the last cut are the same episode: one cut."""
    throttle = RateThrottle(20.0)
    assert throttle.push_back(now=10.0, sent_at=9.5) == 10.0
    for sent_at in (9.6, 9.7, 9.9):  # in flight when the cut came
        assert throttle.push_back(now=10.2, sent_at=sent_at) == 10.0
    assert throttle.push_back(now=11.0, sent_at=10.0) == 5.0  # sent at the cut: a new episode
    assert throttle.push_back(now=11.0, sent_at=None) == 2.5  # unknown: a new episode too


def test_the_rate_never_falls_below_a_sixteenth() -> None:
    """However many episodes, the rate stays at least 1/16 of the configured one."""
    throttle = RateThrottle(32.0)
    for step in range(10):
        throttle.push_back(now=float(step), sent_at=None)
    assert throttle.rate == 2.0


def test_the_rate_recovers_by_half_after_five_successes() -> None:
    """Five successes in a row step the rate up x1.5, never above the configured rate."""
    throttle = RateThrottle(20.0)
    throttle.push_back(now=1.0, sent_at=None)
    throttle.push_back(now=2.0, sent_at=None)
    assert throttle.rate == 5.0
    assert [throttle.success() for _ in range(5)] == [5.0] * 4 + [7.5]
    assert [throttle.success() for _ in range(5)][-1] == 11.25
    assert [throttle.success() for _ in range(5)][-1] == 16.875
    assert [throttle.success() for _ in range(5)][-1] == 20.0
    assert [throttle.success() for _ in range(20)] == [20.0] * 20


def test_a_push_back_restarts_the_count_of_successes() -> None:
    """Successes count from the last push-back, even one that did not cut."""
    throttle = RateThrottle(20.0)
    throttle.push_back(now=1.0, sent_at=None)
    for _ in range(4):
        throttle.success()
    throttle.push_back(now=2.0, sent_at=0.5)  # same episode: no cut, but the count restarts
    assert [throttle.success() for _ in range(5)] == [10.0] * 4 + [15.0]


@pytest.mark.parametrize("rate", [0.0, -1.0, math.nan, math.inf])
def test_rejects_a_rate_that_is_not_positive_and_finite(rate: float) -> None:
    """A rate must be a positive, finite number of calls per second."""
    with pytest.raises(UsageError, match="rate"):
        RateThrottle(rate)
    with pytest.raises(UsageError, match="rate"):
        ClockPacer(rate, clock=time.monotonic, sleep=anyio.sleep)


# -- the pacer on the injected clock -----------------------------------------------------------


@pytest.mark.asyncio
async def test_clock_pacer_spaces_concurrent_starts_evenly() -> None:
    """Ten callers at once at 5 calls/s start 0.2 s apart, one at a time, from the first."""
    clock = VirtualClock()
    pacer = ClockPacer(5.0, clock=clock, sleep=clock.sleep)
    starts: list[float] = []

    async def call() -> None:
        await pacer.wait()
        starts.append(clock())

    await clock.run(*[call] * 10)
    assert starts == pytest.approx([100.0 + 0.2 * index for index in range(10)])


@pytest.mark.asyncio
async def test_clock_pacer_never_bursts_after_idle_time() -> None:
    """Time spent idle is not saved up: after a pause the starts are still 0.2 s apart."""
    clock = VirtualClock()
    pacer = ClockPacer(5.0, clock=clock, sleep=clock.sleep)
    starts: list[float] = []

    async def calls() -> None:
        for _ in range(2):
            await pacer.wait()
            starts.append(clock())
        await clock.sleep(5.0)
        for _ in range(3):
            await pacer.wait()
            starts.append(clock())

    await clock.run(calls)
    assert starts == pytest.approx([100.0, 100.2, 105.2, 105.4, 105.6])


@pytest.mark.asyncio
async def test_clock_pacer_enforces_a_cut_rate_at_once() -> None:
    """A rate cut after a start lengthens the gap to the next start; callers see it at once."""
    clock = VirtualClock()
    pacer = ClockPacer(5.0, clock=clock, sleep=clock.sleep)
    starts: list[float] = []

    async def call(index: int) -> None:
        await pacer.wait()
        starts.append(clock())
        if index == 2:
            pacer.set_rate(2.5)  # e.g. a 429 answered the third call

    await clock.run(*[lambda index=index: call(index) for index in range(6)])
    assert gaps(starts) == pytest.approx([0.2, 0.2, 0.4, 0.4, 0.4])


@pytest.mark.asyncio
async def test_clock_pacer_counts_a_faster_rate_from_the_next_start() -> None:
    """A rate raised after a start keeps the gap that start reserved; later ones are shorter."""
    clock = VirtualClock()
    pacer = ClockPacer(2.5, clock=clock, sleep=clock.sleep)
    starts: list[float] = []

    async def call(index: int) -> None:
        await pacer.wait()
        starts.append(clock())
        if index == 1:
            pacer.set_rate(5.0)

    await clock.run(*[lambda index=index: call(index) for index in range(5)])
    assert gaps(starts) == pytest.approx([0.4, 0.4, 0.2, 0.2])


@pytest.mark.asyncio
async def test_a_waiter_cancelled_before_its_start_takes_none() -> None:
    """A caller cancelled while it waits leaves the start to the next caller."""
    clock = VirtualClock()
    pacer = ClockPacer(5.0, clock=clock, sleep=clock.sleep)
    starts: list[tuple[str, float]] = []
    scope = anyio.CancelScope()

    async def call(name: str) -> None:
        await pacer.wait()
        starts.append((name, clock()))

    async def cancelled() -> None:
        with scope:
            await call("cancelled")

    async def later() -> None:  # starts once the first caller sleeps towards 100.2
        scope.cancel()
        await call("later")

    await pacer.wait()  # the start at 100.0 is taken
    await clock.run(cancelled, later)
    assert [name for name, _ in starts] == ["later"]
    assert [at for _, at in starts] == pytest.approx([100.2])


# -- aiolimiter on the loop's own clock ------------------------------------------------------


@pytest.mark.asyncio
async def test_limiter_pacer_spaces_starts_and_enforces_a_cut_rate() -> None:
    """On the loop's clock (real time, 0.3 s) the limiter spaces starts at the rate, a cut
    widens the gap after the last start at once, and the recovery keeps the gap the last cut
    start reserved; no start is ever early."""
    pacer = LimiterPacer(50.0)
    starts: list[float] = []

    async def calls(count: int) -> None:
        for _ in range(count):
            await pacer.wait()
            starts.append(anyio.current_time())

    await calls(3)
    pacer.set_rate(25.0)
    await calls(3)
    pacer.set_rate(100.0)  # never faster than the limiter it was built with
    assert pacer.rate == 50.0
    await calls(3)
    expected = [0.02, 0.02, 0.04, 0.04, 0.04, 0.04, 0.02, 0.02]
    assert all(gap >= least * 0.99 for gap, least in zip(gaps(starts), expected, strict=True))


@pytest.mark.asyncio
async def test_aiolimiter_only_on_the_loops_own_clock() -> None:
    """The default clock and sleep in an asyncio loop get aiolimiter; anything else is paced
    on the clock it was given."""
    clock = VirtualClock()
    assert isinstance(pacer_for(5.0, clock=time.monotonic, sleep=anyio.sleep), LimiterPacer)
    assert isinstance(pacer_for(5.0, clock=clock, sleep=clock.sleep), ClockPacer)
    assert isinstance(pacer_for(5.0, clock=time.monotonic, sleep=clock.sleep), ClockPacer)
    assert isinstance(pacer_for(5.0, clock=clock, sleep=anyio.sleep), ClockPacer)
