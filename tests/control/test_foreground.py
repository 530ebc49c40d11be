"""The foreground governor (pure), the shared sizer, and the scheduler's share and gate."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_trace_delete import BatchSizer, FixedLimit, Outcome
from async_trace_delete._foreground import ForegroundGovernor, SharedSizer
from async_trace_delete._pacing import ClockPacer
from async_trace_delete._scheduler import Scheduler
from tests.support.virtual_clock import VirtualClock


def test_a_canary_over_the_budget_halves_the_share() -> None:
    """One slow canary: the share halves; a second one sent before that cut does not."""
    governor = ForegroundGovernor(1.0)
    assert governor.observe(0.1, sent_at=0.0, now=0.1) == 1.0
    assert governor.observe(2.5, sent_at=1.0, now=3.5) == 0.5
    assert governor.observe(2.0, sent_at=1.5, now=3.6) == 0.5  # same episode: sent before
    assert governor.observe(1.5, sent_at=4.0, now=5.5) == 0.25  # a new episode


def test_four_calm_canaries_raise_the_share_by_half() -> None:
    """After a cut, four canaries within half the budget raise the share x1.5, up to 1."""
    governor = ForegroundGovernor(1.0)
    governor.observe(0.1, sent_at=0.0, now=0.1)
    governor.observe(3.0, sent_at=1.0, now=4.0)
    governor.observe(3.0, sent_at=5.0, now=8.0)
    assert governor.share == 0.25
    shares = [governor.observe(0.2, sent_at=10.0 + i, now=10.2 + i) for i in range(8)]
    assert shares == [0.25, 0.25, 0.25, 0.375, 0.375, 0.375, 0.375, 0.5625]


def test_a_canary_between_half_and_the_budget_neither_cuts_nor_counts_as_calm() -> None:
    """0.7 s against a 1 s budget: no cut, and the calm streak starts over."""
    governor = ForegroundGovernor(1.0)
    governor.observe(2.0, sent_at=0.0, now=2.0)
    for index in range(3):
        governor.observe(0.2, sent_at=3.0 + index, now=3.2 + index)
    governor.observe(0.7, sent_at=7.0, now=7.7)
    assert governor.observe(0.2, sent_at=8.0, now=8.2) == 0.5  # only one calm since


def test_a_server_slow_when_idle_is_held_to_twice_its_fastest_canary() -> None:
    """Canaries never faster than 0.8 s against a 0.5 s budget: after eight of them the
    budget in force is 1.6 s, so the engine is not starved by a server slow for everyone."""
    governor = ForegroundGovernor(0.5)
    assert governor.observe(0.8, sent_at=0.0, now=0.8) == 0.5  # the first ones count
    for index in range(1, 8):
        governor.observe(0.8, sent_at=index, now=index + 0.8)
    assert governor.budget == pytest.approx(1.6)
    assert governor.share == 1 / 16  # the first seven each cut it, down to the floor
    shares = [governor.observe(0.8, sent_at=10.0 + i, now=10.8 + i) for i in range(4)]
    assert shares[-1] == 1.5 / 16  # 0.8 s is calm against 1.6 s: the share comes back
    assert governor.observe(1.7, sent_at=20.0, now=21.7) == 1 / 16  # cut, to the floor


@given(st.lists(st.floats(0.0, 100.0), max_size=200))
def test_the_share_stays_within_its_bounds(latencies: list[float]) -> None:
    """Whatever the canaries say, the share stays in [1/16, 1]."""
    governor = ForegroundGovernor(0.5)
    for index, latency in enumerate(latencies):
        share = governor.observe(latency, sent_at=float(index), now=index + latency)
        assert 1 / 16 <= share <= 1.0


@pytest.mark.parametrize("budget", [0.0, -1.0, float("inf"), float("nan")])
def test_a_budget_must_be_positive_and_finite(budget: float) -> None:
    """A budget of 0, negative, inf or NaN is refused."""
    with pytest.raises(ValueError, match="budget"):
        ForegroundGovernor(budget)


def test_the_shared_sizer_asks_for_a_share_of_the_batch() -> None:
    """At share 0.25 a sizer at 2,000 asks for 500; never below its minimum; it learns from
    what was asked, so at share 1 it asks for the full batch it found."""
    share = 0.25
    inner = BatchSizer(min_size=100, max_size=100_000, initial_size=2_000, target_latency=1.0)
    sizer = SharedSizer(inner, lambda: share)
    assert sizer.size == 500
    share = 0.01
    assert sizer.size == 100
    share = 0.25
    sizer.observe(requested=500, deleted=500, latency=0.25, outcome=Outcome.OK)
    share = 1.0
    assert sizer.size == inner.size >= 2_000  # 2,000/s at the 1 s target
    assert sizer.min_size == 100


def make_scheduler(clock: VirtualClock, limit: int) -> Scheduler:
    return Scheduler(
        limit=FixedLimit(limit),
        pacer=ClockPacer(1000.0, clock=clock, sleep=clock.sleep),
        clock=clock,
        sleep=clock.sleep,
        emit=lambda event: None,
        origin=clock(),
    )


def test_the_share_scales_calls_in_flight_and_stretches_the_gap() -> None:
    """At share 0.5 a limit of 4 is 2 and a 1 s delete is followed by 1 s of quiet; the
    configured gap holds when it is longer."""
    scheduler = make_scheduler(VirtualClock(), 4)
    assert scheduler.limit == 4
    assert scheduler.quiet_gap(1.0, 0.1) == pytest.approx(0.1)
    scheduler.set_share(0.5)
    assert scheduler.limit == 2
    assert scheduler.quiet_gap(1.0, 0.1) == pytest.approx(1.0)
    scheduler.set_share(0.1)
    assert scheduler.limit == 1  # never 0
    assert scheduler.quiet_gap(1.0, 20.0) == pytest.approx(20.0)


@pytest.mark.asyncio
async def test_a_closed_gate_holds_every_call_start_until_it_opens() -> None:
    """While the gate is closed no call passes pace(); opening it lets them through."""
    clock = VirtualClock()
    scheduler = make_scheduler(clock, 4)
    scheduler.set_gate(False)
    passed: list[float] = []

    async def call() -> None:
        await scheduler.pace()
        passed.append(clock())

    async def open_later() -> None:
        await clock.sleep(5.0)
        assert passed == []
        scheduler.set_gate(True)

    await clock.run(call, call, open_later)
    assert len(passed) == 2
    assert min(passed) >= 105.0
