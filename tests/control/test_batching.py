"""Tests of the adaptive batch sizer: plain numbers, synchronous, simulated servers."""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from async_trace_delete._batching import BatchSizer, Outcome
from async_trace_delete._exceptions import UsageError

TARGET = 1.0

# (a, b, c) of a delete call costing a + b*n + c*n*n seconds for n traces.
SERVERS = {
    "sqlite": (0.33, 9e-5, 0.0),
    "postgresql": (0.06, 9e-5, 0.0),
    "quadratic": (0.2, 2e-5, 2e-9),
    "mostly-quadratic": (0.05, 1e-6, 1.5e-9),
}


def latency_curve(a: float, b: float, c: float) -> Callable[[int], float]:
    """Return the latency of a simulated server as a function of the batch size."""

    def latency(n: int) -> float:
        return a + b * n + c * n * n

    return latency


def run(
    sizer: BatchSizer, latency: Callable[[int], float], steps: int, noise: random.Random | None
) -> list[float]:
    """Feed ``steps`` full, successful calls to ``sizer``; return each call's latency."""
    seen = []
    for _ in range(steps):
        requested = sizer.size
        measured = latency(requested) * (noise.uniform(0.9, 1.1) if noise else 1.0)
        seen.append(measured)
        sizer.observe(requested=requested, deleted=requested, latency=measured, outcome=Outcome.OK)
    return seen


def ok(sizer: BatchSizer, requested: int, latency: float, deleted: int | None = None) -> int:
    """Observe one successful call (full batch unless ``deleted`` says otherwise)."""
    deleted = requested if deleted is None else deleted
    return sizer.observe(requested=requested, deleted=deleted, latency=latency, outcome=Outcome.OK)


@pytest.mark.parametrize("server", sorted(SERVERS))
@pytest.mark.parametrize("initial_size", [100, 100_000])
def test_converges_to_target_latency(server: str, initial_size: int) -> None:
    """From far below or far above, every call after the 10th is within ±10% of the target."""
    sizer = BatchSizer(target_latency=TARGET, initial_size=initial_size)
    latencies = run(sizer, latency_curve(*SERVERS[server]), steps=30, noise=None)
    assert all(abs(lat / TARGET - 1) <= 0.10 for lat in latencies[10:]), latencies


@pytest.mark.parametrize("target", [0.25, 1.0, 3.0])
def test_converges_to_other_targets(target: float) -> None:
    """The target is the knob: on a SQLite-like server each target is reached in 10 calls."""
    sizer = BatchSizer(target_latency=target, initial_size=1_000, max_size=1_000_000)
    latencies = run(sizer, latency_curve(0.06, 9e-5, 0.0), steps=25, noise=None)
    assert all(abs(lat / target - 1) <= 0.10 for lat in latencies[10:]), latencies


@pytest.mark.parametrize(
    ("server", "spread"),
    [("sqlite", 0.15), ("postgresql", 0.15), ("quadratic", 0.25), ("mostly-quadratic", 0.35)],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stays_near_target_with_noise(server: str, spread: float, seed: int) -> None:
    """With ±10% multiplicative noise the size's true latency stays near the target."""
    curve = latency_curve(*SERVERS[server])
    sizer = BatchSizer(target_latency=TARGET, initial_size=100)
    noise = random.Random(seed)
    true_latencies = []
    for step in range(80):
        requested = sizer.size
        if step >= 15:
            true_latencies.append(curve(requested))
        measured = curve(requested) * noise.uniform(0.9, 1.1)
        ok(sizer, requested, measured)
    assert abs(statistics.fmean(true_latencies) / TARGET - 1) <= 0.05
    assert all(abs(lat / TARGET - 1) <= spread for lat in true_latencies)


def test_two_calls_in_flight_share_one_sizer() -> None:
    """Interleaved observations of overlapping calls still converge (steps use ``requested``)."""
    curve = latency_curve(0.33, 9e-5, 0.0)
    sizer = BatchSizer(target_latency=TARGET, initial_size=100)
    in_flight = [sizer.size, sizer.size]
    latencies = []
    for _ in range(40):
        requested = in_flight.pop(0)
        latencies.append(curve(requested))
        ok(sizer, requested, curve(requested))
        in_flight.append(sizer.size)
    assert all(abs(lat / TARGET - 1) <= 0.10 for lat in latencies[16:]), latencies


def test_overshoot_halves_the_next_step() -> None:
    """After a step overshoots, the step back is taken at half strength (log space)."""
    sizer = BatchSizer(initial_size=4_000)
    assert ok(sizer, 4_000, 0.5) == 8_000  # grew
    assert ok(sizer, 8_000, 4.0) == 4_000  # overshot: sqrt(1/4) instead of 1/4
    assert ok(sizer, 4_000, 2.0) == 2_000  # same direction again: full step


def test_slow_overhead_dominated_server_still_climbs() -> None:
    """With 90% of the target spent on overhead, growth is slow but steady up to the target."""
    curve = latency_curve(0.9, 1e-7, 0.0)
    sizer = BatchSizer(target_latency=TARGET, initial_size=100, max_size=10_000_000)
    latencies = run(sizer, curve, steps=120, noise=None)
    assert latencies == sorted(latencies)
    assert abs(latencies[-1] / TARGET - 1) <= 0.10


def test_keeps_size_within_tolerance() -> None:
    """A call within the dead band leaves the size alone."""
    sizer = BatchSizer(initial_size=5_000, tolerance=0.05)
    assert ok(sizer, 5_000, 1.04) == 5_000
    assert ok(sizer, 5_000, 0.96) == 5_000


def test_grows_at_most_max_growth() -> None:
    """A very fast call grows the size by at most ``max_growth``."""
    sizer = BatchSizer(initial_size=1_000, max_growth=2.0)
    assert ok(sizer, 1_000, 0.01) == 2_000
    assert ok(sizer, 2_000, 0.0) == 4_000


def test_shrinks_in_proportion_when_slow() -> None:
    """A call four times too slow divides the size by four."""
    sizer = BatchSizer(initial_size=8_000)
    assert ok(sizer, 8_000, 4.0) == 2_000


def test_step_is_based_on_requested_not_current_size() -> None:
    """A late observation is scaled from the size it asked for."""
    sizer = BatchSizer(initial_size=8_000)
    ok(sizer, 8_000, 2.0)
    assert sizer.size == 4_000
    assert ok(sizer, 1_000, 2.0) == 500


def test_a_timeout_cuts_hard() -> None:
    """A timeout (the call took too long) halves the size at once."""
    sizer = BatchSizer(initial_size=8_000)
    outcome = Outcome.TIMEOUT
    assert sizer.observe(requested=8_000, deleted=None, latency=None, outcome=outcome) == 4_000


@pytest.mark.parametrize("outcome", [Outcome.THROTTLED, Outcome.UNAVAILABLE, Outcome.SERVER_ERROR])
def test_faults_that_say_nothing_about_size_leave_it(outcome: Outcome) -> None:
    """A 429, a 503 or a dropped connection say busy or flaky, not too big: no cut, so
    random faults cannot pin the size at its minimum."""
    sizer = BatchSizer(initial_size=8_000)
    for _ in range(50):
        assert sizer.observe(requested=8_000, deleted=None, latency=None, outcome=outcome) == 8_000


def test_overload_cuts_from_the_smaller_of_size_and_requested() -> None:
    """An overload is cut from ``min(size, requested)``."""
    sizer = BatchSizer(initial_size=8_000, overload_factor=0.25)
    assert sizer.observe(requested=2_000, deleted=0, latency=3.0, outcome=Outcome.TIMEOUT) == 500


def test_one_cut_per_congestion_episode() -> None:
    """Calls issued before a cut neither cut again nor regrow; a fresh success ends the hold."""
    sizer = BatchSizer(initial_size=8_000)
    sizer.observe(requested=8_000, deleted=None, latency=None, outcome=Outcome.TIMEOUT)
    assert sizer.size == 4_000
    # Three more calls of 8000 were in flight: same episode.
    sizer.observe(requested=8_000, deleted=None, latency=None, outcome=Outcome.TIMEOUT)
    assert sizer.size == 4_000
    assert ok(sizer, 8_000, 0.5) == 4_000  # stale and fast: may not undo the cut
    assert ok(sizer, 8_000, 4.0) == 2_000  # stale and slow: may confirm it
    assert ok(sizer, 2_000, 0.5) == 4_000  # fresh: normal growth again
    assert ok(sizer, 8_000, 0.5) == 16_000  # hold is over


def test_fresh_overload_during_hold_cuts_again() -> None:
    """A call issued after the cut that fails too shows the cut was not enough."""
    sizer = BatchSizer(initial_size=8_000)
    sizer.observe(requested=8_000, deleted=None, latency=None, outcome=Outcome.TIMEOUT)
    sizer.observe(requested=4_000, deleted=None, latency=None, outcome=Outcome.TIMEOUT)
    assert sizer.size == 2_000


def test_too_large_halves_and_the_ceiling_holds_forever() -> None:
    """TOO_LARGE halves the requested size and the size never exceeds that again."""
    sizer = BatchSizer(initial_size=200_000, max_size=1_000_000)
    sizer.observe(requested=200_000, deleted=None, latency=None, outcome=Outcome.TOO_LARGE)
    assert sizer.size == 100_000
    assert sizer.ceiling == 100_000
    for _ in range(50):
        ok(sizer, sizer.size, 0.01)
        assert sizer.size <= 100_000
    assert sizer.size == 100_000
    ok(sizer, 1_000_000, 0.01)  # even a stale call that asked for more cannot lift it
    assert sizer.size == 100_000


def test_ceiling_only_goes_down() -> None:
    """A later TOO_LARGE of a bigger batch does not raise the ceiling; a smaller one lowers it."""
    sizer = BatchSizer(initial_size=50_000, max_size=1_000_000)
    sizer.observe(requested=100_000, deleted=None, latency=None, outcome=Outcome.TOO_LARGE)
    sizer.observe(requested=300_000, deleted=None, latency=None, outcome=Outcome.TOO_LARGE)
    assert sizer.ceiling == 50_000
    sizer.observe(requested=40_000, deleted=None, latency=None, outcome=Outcome.TOO_LARGE)
    assert sizer.ceiling == 20_000
    assert sizer.size == 20_000


def test_ceiling_below_min_size_wins() -> None:
    """What the server cannot take overrides the configured minimum."""
    sizer = BatchSizer(initial_size=100, min_size=100)
    sizer.observe(requested=100, deleted=None, latency=None, outcome=Outcome.TOO_LARGE)
    assert sizer.size == sizer.ceiling == 50
    ok(sizer, 50, 10.0)
    assert sizer.size == 50


def test_short_final_batch_never_grows() -> None:
    """A short batch, however fast, says nothing about capacity."""
    sizer = BatchSizer(initial_size=4_000)
    assert ok(sizer, 4_000, 0.01, deleted=10) == 4_000


def test_slow_short_batch_shrinks() -> None:
    """A slow short batch shrinks the size to what would have met the target."""
    sizer = BatchSizer(initial_size=4_000)
    assert ok(sizer, 4_000, 2.0, deleted=3_000) == 1_500
    assert ok(sizer, 4_000, 2.0, deleted=0) == 1_500  # nothing deleted: nothing learnt


def test_unknown_latency_changes_nothing() -> None:
    """A success with no latency (e.g. cancelled) leaves the size alone."""
    sizer = BatchSizer(initial_size=4_000)
    assert sizer.observe(requested=4_000, deleted=4_000, latency=None, outcome=Outcome.OK) == 4_000


def test_initial_size_is_clamped() -> None:
    """An initial size outside the bounds starts at the nearest bound."""
    assert BatchSizer(initial_size=10, min_size=100).size == 100
    assert BatchSizer(initial_size=10_000, max_size=500).size == 500


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("target_latency", 0.0),
        ("target_latency", float("nan")),
        ("min_size", 0),
        ("max_size", 0),
        ("initial_size", 0),
        ("initial_size", True),
        ("min_size", 10.0),
        ("max_growth", 1.0),
        ("tolerance", 1.0),
        ("tolerance", -0.1),
        ("overload_factor", 0.0),
        ("overload_factor", 1.0),
    ],
)
def test_rejects_bad_settings(argument: str, value: float) -> None:
    """Each bad setting raises a ValueError naming it."""
    with pytest.raises(ValueError, match=argument):
        BatchSizer(**{argument: value})  # type: ignore[call-overload]


def test_rejects_max_below_min() -> None:
    """``max_size`` below ``min_size`` is refused."""
    with pytest.raises(UsageError, match="max_size"):
        BatchSizer(min_size=1_000, max_size=100)


@pytest.mark.parametrize(
    ("requested", "deleted", "latency", "argument"),
    [
        (0, 0, 1.0, "requested"),
        (True, 0, 1.0, "requested"),
        (10, -1, 1.0, "deleted"),
        (10, False, 1.0, "deleted"),
        (10, 10, -1.0, "latency"),
        (10, 10, float("nan"), "latency"),
    ],
)
def test_rejects_bad_observations(
    requested: int, deleted: int, latency: float, argument: str
) -> None:
    """Impossible observations are refused rather than learnt from."""
    with pytest.raises(UsageError, match=argument):
        BatchSizer().observe(
            requested=requested, deleted=deleted, latency=latency, outcome=Outcome.OK
        )


observations = st.tuples(
    st.integers(min_value=1, max_value=2_000_000),
    st.one_of(st.none(), st.integers(min_value=0, max_value=2_000_000)),
    st.one_of(st.none(), st.floats(min_value=0, max_value=1_000, allow_nan=False)),
    st.sampled_from(Outcome),
)


@settings(max_examples=200)
@given(
    min_size=st.integers(min_value=1, max_value=1_000),
    span=st.integers(min_value=0, max_value=200_000),
    initial_size=st.integers(min_value=1, max_value=300_000),
    target=st.floats(min_value=0.01, max_value=60),
    sequence=st.lists(observations, max_size=60),
)
def test_size_always_within_bounds(
    min_size: int,
    span: int,
    initial_size: int,
    target: float,
    sequence: list[tuple[int, int | None, float | None, Outcome]],
) -> None:
    """Any sequence of observations keeps the size within bounds and under the ceiling."""
    max_size = min_size + span
    sizer = BatchSizer(
        target_latency=target, min_size=min_size, max_size=max_size, initial_size=initial_size
    )
    previous_ceiling: int | None = None
    for requested, deleted, latency, outcome in sequence:
        size = sizer.observe(requested=requested, deleted=deleted, latency=latency, outcome=outcome)
        assert size == sizer.size
        ceiling = sizer.ceiling
        upper = max_size if ceiling is None else min(max_size, ceiling)
        assert min(min_size, upper) <= size <= upper
        assert size >= 1
        if previous_ceiling is not None:
            assert ceiling is not None
            assert ceiling <= previous_ceiling
        previous_ceiling = ceiling


@settings(max_examples=200)
@given(
    overhead_share=st.floats(min_value=0.0, max_value=0.8),
    per_trace=st.floats(min_value=1e-7, max_value=1e-2),
    initial_size=st.integers(min_value=100, max_value=100_000),
)
def test_converges_on_any_linear_server(
    overhead_share: float, per_trace: float, initial_size: int
) -> None:
    """For latency ``a + b*n`` with ``a`` below the target it converges, or rests at a bound."""
    a = overhead_share * TARGET
    sizer = BatchSizer(target_latency=TARGET, initial_size=initial_size)
    curve = latency_curve(a, per_trace, 0.0)
    # Growth per step is at most target / a, so an overhead near the target climbs slowly.
    run(sizer, curve, steps=60, noise=None)
    latency = curve(sizer.size)
    if sizer.size == sizer.max_size:
        assert latency <= TARGET * 1.10
    elif sizer.size == sizer.min_size:
        assert latency >= TARGET * 0.90
    else:
        assert abs(latency / TARGET - 1) <= 0.10
