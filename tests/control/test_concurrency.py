"""Tests of the adaptive concurrency limit: plain numbers and a discrete-event server model."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_trace_delete._batching import BatchSizer, Outcome
from async_trace_delete._concurrency import ConcurrencyController, Window
from async_trace_delete._exceptions import UsageError

OVERLOADS = [Outcome.THROTTLED, Outcome.UNAVAILABLE, Outcome.TIMEOUT, Outcome.SERVER_ERROR]


def single_writer(in_flight: int) -> float:
    """SQLite-like capacity: one writer, a little worse for every extra call in flight."""
    return float(0.97 ** (in_flight - 1))


def scales_to_four(in_flight: int) -> float:
    """PostgreSQL-like capacity: x1.3 at 2, x1.69 at 4 in flight, slowly worse beyond."""
    return float(min(in_flight, 4) ** 0.38 * (4 / max(in_flight, 4)) ** 0.1)


@dataclass
class Call:
    """One delete call in flight on the simulated server."""

    remaining: float  # seconds of work left, at the speed of a lone call
    started: float
    size: int


@dataclass
class Run:
    """What a simulation saw."""

    limits: list[int]  # the limit after each completion
    latencies: list[float]
    throughput: float  # traces per second over the whole run


def simulate(
    controller: ConcurrencyController,
    capacity: Callable[[int], float],
    overhead: float,
    *,
    completions: int,
    jobs: int = 8,
    size: int | None = 4_000,
    sizer: BatchSizer | None = None,
) -> Run:
    """Run ``jobs`` always-ready streams of deletes against a processor-sharing server.

    A call of ``n`` traces needs ``overhead + 0.09 ms * n`` seconds of work; with ``k`` calls
    in flight each progresses at ``capacity(k) / k``. The batch is ``size`` or, if given, what
    the shared ``sizer`` says when the call starts. No clock, no sleeping: time jumps from one
    completion to the next.
    """
    now = 0.0
    in_flight: list[Call] = []
    limits: list[int] = []
    latencies: list[float] = []
    deleted_total = 0
    while len(limits) < completions:
        while len(in_flight) < min(controller.limit, jobs):
            n = sizer.size if sizer is not None else size
            assert n is not None
            in_flight.append(Call(overhead + 9e-5 * n, now, n))
        speed = capacity(len(in_flight)) / len(in_flight)
        done = min(in_flight, key=lambda call: call.remaining)
        elapsed = done.remaining / speed
        now += elapsed
        for call in in_flight:
            call.remaining -= elapsed * speed
        in_flight.remove(done)
        latency = now - done.started
        deleted_total += done.size
        if sizer is not None:
            sizer.observe(
                requested=done.size, deleted=done.size, latency=latency, outcome=Outcome.OK
            )
        controller.record(
            now=now,
            deleted=done.size,
            latency=latency,
            outcome=Outcome.OK,
            waiting=max(0, jobs - controller.limit),
        )
        limits.append(controller.limit)
        latencies.append(latency)
    return Run(limits, latencies, deleted_total / now)


def feed(
    controller: ConcurrencyController,
    calls: int,
    *,
    start: float,
    interval: float,
    deleted: int = 100,
    latency: float = 1.0,
    waiting: int = 1,
) -> float:
    """Record ``calls`` OK completions ``interval`` seconds apart; return the last time."""
    now = start
    for _ in range(calls):
        now += interval
        controller.record(
            now=now, deleted=deleted, latency=latency, outcome=Outcome.OK, waiting=waiting
        )
    return now


def test_single_writer_server_settles_at_one() -> None:
    """On a SQLite-like server parallelism buys nothing, so the limit stays at 1."""
    controller = ConcurrencyController(max_limit=8)
    run = simulate(controller, single_writer, overhead=0.33, completions=400)
    counts = Counter(run.limits)
    assert max(counts) <= 2  # it probes 2 now and then, never further
    assert counts[1] >= 0.85 * len(run.limits)
    assert run.limits[-1] == 1


def test_scaling_server_opens_up() -> None:
    """On a PostgreSQL-like server the limit climbs to where throughput stops rising."""
    controller = ConcurrencyController(max_limit=8)
    run = simulate(controller, scales_to_four, overhead=0.06, completions=400)
    second_half = run.limits[200:]
    assert min(second_half) >= 3
    assert Counter(second_half).most_common(1)[0][0] == 4
    sequential = simulate(
        ConcurrencyController(max_limit=1), scales_to_four, overhead=0.06, completions=100
    )
    assert run.throughput >= 1.5 * sequential.throughput


def test_shared_batch_sizer_and_controller_together() -> None:
    """With the batch sizer in the loop, latency stays on target and the limits still differ."""
    sqlite_controller = ConcurrencyController(max_limit=8)
    sqlite_run = simulate(
        sqlite_controller, single_writer, 0.33, completions=300, size=None, sizer=BatchSizer()
    )
    postgres_controller = ConcurrencyController(max_limit=8)
    postgres_run = simulate(
        postgres_controller, scales_to_four, 0.06, completions=300, size=None, sizer=BatchSizer()
    )
    assert Counter(sqlite_run.limits[150:])[1] >= 0.85 * 150
    assert min(postgres_run.limits[150:]) >= 3
    # Probes of one more call shift latency for a few calls; the sizer brings it back.
    assert abs(statistics.median(postgres_run.latencies[150:]) - 1.0) <= 0.05
    assert max(postgres_run.latencies[150:]) <= 1.5
    assert postgres_run.throughput >= 1.3 * sqlite_run.throughput


def test_a_gain_that_bigger_batches_explain_does_not_keep_a_probe() -> None:
    """Twice the throughput at limit 2, but from batches twice as big (the sizer ramping):
    that says nothing of parallelism, so the probe reverts; at equal batches it is kept."""
    ramping = ConcurrencyController(max_limit=4, window_calls=4)
    now = feed(ramping, 4, start=0.0, interval=1.0, deleted=1_000)  # 1,000 traces/s at 1
    assert ramping.limit == 2
    assert ramping.probing
    feed(ramping, 4, start=now, interval=1.0, deleted=2_000)  # 2,000/s, batches doubled
    assert ramping.limit == 1
    steady = ConcurrencyController(max_limit=4, window_calls=4)
    now = feed(steady, 4, start=0.0, interval=1.0, deleted=1_000)
    feed(steady, 4, start=now, interval=0.5, deleted=1_100)  # 2,200/s, batches alike
    assert steady.limit == 3


def test_a_single_writer_is_not_opened_up_while_the_sizer_ramps() -> None:
    """Four jobs on a SQLite-like server, the shared sizer ramping from 100 traces: the
    first probes meet growing batches and must not climb on them (the benchmark's SQLite
    run held 1.85 calls in flight, peak 3, and other clients' p99 doubled)."""
    controller = ConcurrencyController(max_limit=4)
    sizer = BatchSizer(initial_size=100)
    run = simulate(controller, single_writer, 0.2, completions=60, jobs=4, size=None, sizer=sizer)
    assert max(run.limits) <= 2
    assert Counter(run.limits)[1] >= 0.8 * len(run.limits)


@pytest.mark.parametrize("initial_limit", [1, 3])
def test_never_probes_without_demand(initial_limit: int) -> None:
    """When nothing waits on the limit, the limit does not grow, however fast the calls."""
    controller = ConcurrencyController(max_limit=8, initial_limit=initial_limit)
    feed(controller, 200, start=0.0, interval=0.01, waiting=0)
    assert controller.limit == initial_limit


def test_window_closes_after_twice_the_limit() -> None:
    """A window needs ``max(window_calls, 2 * limit)`` completions: with demand and nothing
    to wait for, the probe comes with the sixth completion at limit 3, not before."""
    controller = ConcurrencyController(max_limit=8, initial_limit=3, window_calls=4)
    now = feed(controller, 5, start=0.0, interval=1.0)
    assert (controller.limit, controller.probing) == (3, False)
    feed(controller, 1, start=now, interval=1.0)
    assert (controller.limit, controller.probing) == (4, True)


def test_window_measures_from_the_first_call_start() -> None:
    """A first window starts when its first call started (``now - latency``) and its
    throughput is the traces deleted over the time to its last completion."""
    window = Window()
    for now in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0):
        window.add(now=now, deleted=100, latency=1.0, waiting=1 if now < 4 else 0)
    result = window.close(6.0)
    assert (result.calls, result.deleted, result.duration) == (6, 600, 6.0)
    assert result.throughput == pytest.approx(100.0)
    assert result.mean_latency == pytest.approx(1.0)
    assert result.demand is False  # calls waited in 3 of 6 completions: not most of them


def test_a_window_started_at_a_time_measures_from_it() -> None:
    """A window that follows another starts where that one closed, idle time included."""
    window = Window(start=10.0)
    window.add(now=14.0, deleted=200, latency=0.5, waiting=2)
    result = window.close(14.0)
    assert (result.duration, result.throughput, result.demand) == (4.0, 50.0, True)


def test_probe_kept_on_gain_then_rejected_without() -> None:
    """A probe that gains throughput is kept and the climb goes on; one that doesn't reverts."""
    controller = ConcurrencyController(max_limit=4, window_calls=4, reprobe_interval=2)
    now = feed(controller, 4, start=0.0, interval=1.0)  # 100 traces/s at 1
    assert controller.limit == 2
    assert controller.probing
    now = feed(controller, 4, start=now, interval=0.5)  # 200 traces/s at 2: kept
    assert controller.limit == 3
    now = feed(controller, 1, start=now, interval=0.5)  # warm-up: a call from limit 2
    now = feed(controller, 6, start=now, interval=0.5)  # still 200 traces/s at 3: no gain
    assert controller.limit == 2
    assert not controller.probing
    now = feed(controller, 2, start=now, interval=0.5)  # warm-up: calls from limit 3
    now = feed(controller, 8, start=now, interval=0.5)  # two windows of cool-down
    assert controller.limit == 2
    feed(controller, 4, start=now, interval=0.5)
    assert controller.limit == 3


def _limit_changes(
    controller: ConcurrencyController, calls: int, interval: Callable[[int, int], float]
) -> list[tuple[int, int, int]]:
    """Feed ``calls`` completions, one every ``interval(index, limit)`` seconds, with demand.

    Returns (index, old limit, new limit) for every change of the limit.
    """
    changes: list[tuple[int, int, int]] = []
    now = 0.0
    for index in range(calls):
        now += interval(index, controller.limit)
        before = controller.limit
        controller.record(now=now, deleted=100, latency=1.0, outcome=Outcome.OK, waiting=3)
        if controller.limit != before:
            changes.append((index, before, controller.limit))
    return changes


def test_rejected_probes_in_a_row_wait_longer_each_time() -> None:
    """Each rejection in a row doubles the wait before the next probe, up to the maximum."""
    controller = ConcurrencyController(
        max_limit=2, window_calls=4, reprobe_interval=1, max_reprobe_interval=4
    )
    changes = _limit_changes(controller, 200, lambda index, limit: 1.0)  # no gain at 2
    starts = [index for index, old, new in changes if new > old]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    # probe window (4) + warm-up (1) + the wait (1, 2, 4, 4... windows of 4) + a window (4)
    assert gaps[:5] == [13, 17, 25, 25, 25]


def test_a_kept_probe_resets_the_wait() -> None:
    """After parallelism starts to pay, the next rejected probe waits the base interval again."""
    controller = ConcurrencyController(
        max_limit=3, window_calls=4, reprobe_interval=1, max_reprobe_interval=8
    )

    def interval(index: int, limit: int) -> float:
        return 0.5 if index >= 40 and limit >= 2 else 1.0  # from call 40 on, 2 in flight pay

    changes = _limit_changes(controller, 120, interval)
    assert changes[:7] == [
        (3, 1, 2), (7, 2, 1),  # rejected: wait 1 window
        (16, 1, 2), (20, 2, 1),  # rejected: wait 2
        (33, 1, 2), (37, 2, 1),  # rejected: wait 4
        (58, 1, 2),  # by now 2 in flight pay: kept, and the climb goes on
    ]  # fmt: skip
    assert changes[7:11] == [
        (62, 2, 3), (69, 3, 2),  # 3 gains nothing over 2: rejected, and the wait is back to 1
        (79, 2, 3), (86, 3, 2),  # warm-up (2) + 1 window + a window: 10 calls later
    ]  # fmt: skip


def test_probe_rejected_when_latency_too_high() -> None:
    """More throughput at the price of latency beyond the tolerance is not kept."""
    controller = ConcurrencyController(max_limit=4, target_latency=1.0, latency_tolerance=1.5)
    now = feed(controller, 4, start=0.0, interval=1.0)
    assert controller.limit == 2
    feed(controller, 4, start=now, interval=0.5, latency=1.6)
    assert controller.limit == 1


def test_never_exceeds_max_limit() -> None:
    """With demand and ever more throughput the climb stops at ``max_limit``."""
    controller = ConcurrencyController(max_limit=3)
    now, interval = 0.0, 1.0
    for _ in range(20):
        interval /= 2
        now = feed(controller, 8, start=now, interval=interval)
        assert controller.limit <= 3
    assert controller.limit == 3


@pytest.mark.parametrize("outcome", OVERLOADS)
def test_overload_halves_the_limit(outcome: Outcome) -> None:
    """Any overload answer halves the limit at once."""
    controller = ConcurrencyController(max_limit=8, initial_limit=8)
    limit = controller.record(now=1.0, deleted=0, latency=1.0, outcome=outcome, waiting=3)
    assert limit == 4


def test_overload_cuts_once_per_episode() -> None:
    """Answers from calls in flight before a cut don't cut again; a fresh one does."""
    controller = ConcurrencyController(max_limit=8, initial_limit=8)
    for now in (1.0, 1.1, 1.2):  # three calls of the same burst
        controller.record(now=now, deleted=0, latency=1.0, outcome=Outcome.THROTTLED, waiting=0)
    assert controller.limit == 4
    feed(controller, 5, start=1.2, interval=0.1, waiting=0)  # the rest of the 8 in flight
    controller.record(now=3.0, deleted=0, latency=1.0, outcome=Outcome.UNAVAILABLE, waiting=0)
    assert controller.limit == 2


def test_overload_never_goes_below_one() -> None:
    """However many overloads come, the limit stays at least 1."""
    controller = ConcurrencyController(max_limit=8, initial_limit=2)
    for step in range(10):
        controller.record(
            now=float(step), deleted=0, latency=1.0, outcome=Outcome.SERVER_ERROR, waiting=0
        )
    assert controller.limit == 1


def test_overload_during_probe_reverts_and_cools_down() -> None:
    """An overload while probing ends the probe and delays the next one."""
    controller = ConcurrencyController(max_limit=8, initial_limit=2, reprobe_interval=1)
    now = feed(controller, 4, start=0.0, interval=1.0)
    assert controller.limit == 3
    controller.record(now=now + 0.1, deleted=0, latency=1.0, outcome=Outcome.TIMEOUT, waiting=2)
    assert controller.limit == 1
    assert not controller.probing
    now = feed(controller, 2, start=now + 0.1, interval=0.5)  # warm-up
    now = feed(controller, 4, start=now, interval=0.5)  # cool-down window
    assert controller.limit == 1
    feed(controller, 4, start=now, interval=0.5)
    assert controller.limit == 2


def test_too_large_is_not_an_overload() -> None:
    """A batch too large for the backend says nothing about parallelism."""
    controller = ConcurrencyController(max_limit=8, initial_limit=4)
    controller.record(now=1.0, deleted=0, latency=1.0, outcome=Outcome.TOO_LARGE, waiting=0)
    assert controller.limit == 4


@pytest.mark.parametrize(
    ("arguments", "name"),
    [
        ({"max_limit": 0}, "max_limit"),
        ({"max_limit": True}, "max_limit"),
        ({"max_limit": 2, "window_calls": 2.0}, "window_calls"),
        ({"max_limit": 2, "initial_limit": 0}, "initial_limit"),
        ({"max_limit": 2, "initial_limit": 3}, "initial_limit"),
        ({"max_limit": 2, "target_latency": 0.0}, "target_latency"),
        ({"max_limit": 2, "min_gain": -0.1}, "min_gain"),
        ({"max_limit": 2, "latency_tolerance": 0.5}, "latency_tolerance"),
        ({"max_limit": 2, "window_calls": 0}, "window_calls"),
        ({"max_limit": 2, "reprobe_interval": -1}, "reprobe_interval"),
        ({"max_limit": 2, "max_reprobe_interval": -1}, "max_reprobe_interval"),
    ],
)
def test_rejects_bad_settings(arguments: dict[str, float], name: str) -> None:
    """Each bad setting (a bool or a float where a count belongs, too) raises a ValueError
    naming it."""
    with pytest.raises(ValueError, match=name):
        ConcurrencyController(**arguments)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("now", "deleted", "latency", "waiting", "name"),
    [
        (float("nan"), 1, 1.0, 0, "now"),
        (1.0, -1, 1.0, 0, "deleted"),
        (1.0, 1, -1.0, 0, "latency"),
        (1.0, 1, 1.0, -1, "waiting"),
        (1.0, True, 1.0, 0, "deleted"),
        (1.0, 1, 1.0, True, "waiting"),
        (1.0, 1, float("inf"), 0, "latency"),
    ],
)
def test_rejects_bad_records(
    now: float, deleted: int, latency: float, waiting: int, name: str
) -> None:
    """Impossible records are refused rather than learnt from."""
    controller = ConcurrencyController(max_limit=2)
    with pytest.raises(UsageError, match=name):
        controller.record(
            now=now, deleted=deleted, latency=latency, outcome=Outcome.OK, waiting=waiting
        )


records = st.tuples(
    st.floats(min_value=0, max_value=100, allow_nan=False),
    st.integers(min_value=0, max_value=100_000),
    st.floats(min_value=0, max_value=100, allow_nan=False),
    st.sampled_from(Outcome),
    st.integers(min_value=0, max_value=20),
)


@given(
    max_limit=st.integers(min_value=1, max_value=16),
    initial_share=st.floats(min_value=0, max_value=1),
    window_calls=st.integers(min_value=1, max_value=8),
    reprobe_interval=st.integers(min_value=0, max_value=4),
    sequence=st.lists(records, max_size=200),
)
def test_limit_always_within_bounds(
    max_limit: int,
    initial_share: float,
    window_calls: int,
    reprobe_interval: int,
    sequence: list[tuple[float, int, float, Outcome, int]],
) -> None:
    """Any sequence of records keeps the limit within ``[1, max_limit]``."""
    controller = ConcurrencyController(
        max_limit=max_limit,
        initial_limit=max(1, round(initial_share * max_limit)),
        window_calls=window_calls,
        reprobe_interval=reprobe_interval,
    )
    now = 0.0
    for gap, deleted, latency, outcome, waiting in sequence:
        now += gap
        limit = controller.record(
            now=now, deleted=deleted, latency=latency, outcome=outcome, waiting=waiting
        )
        assert limit == controller.limit
        assert 1 <= limit <= max_limit
