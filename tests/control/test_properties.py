"""Property tests of the controllers: their bounds and convergence.

* The batch sizer stays within its bounds for any observation, and converges to the target
  latency for any cost curve ``a + b*n + c*n**2`` after any sequence of faults.
* The concurrency controller's limit stays within ``[1, max_limit]``.
* Backoff stays within ``[0, cap]`` (``Retry-After`` as a floor); the retry budget is never
  overspent.

Exact accounting under drawn fault schedules is ``tests/engine/test_engine_properties.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from async_trace_delete import (
    BatchSizer,
    ConcurrencyController,
    Outcome,
    RetryBudget,
    RetryPolicy,
    compute_backoff,
)

# From 10 traces up, a step smaller than one trace is inside the sizer's 5 % dead band anyway.
SMALLEST_STEPPABLE = 1
OUTCOMES = list(Outcome)
FAULT_OUTCOMES = [outcome for outcome in Outcome if outcome is not Outcome.OK]


# -- the batch sizer ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CostCurve:
    """Seconds a delete of ``n`` traces takes: ``fixed + linear*n + quadratic*n**2``."""

    fixed: float
    linear: float
    quadratic: float

    def __call__(self, n: int) -> float:
        """The latency of a call deleting ``n`` traces."""
        return self.fixed + self.linear * n + self.quadratic * n * n


@st.composite
def cost_curves(draw: st.DrawFn, target: float) -> tuple[CostCurve, int]:
    """A convex cost curve reaching ``target`` seconds at a drawn size ``n*``; (curve, n*)."""
    best = draw(st.integers(50, 50_000))
    fixed = draw(st.floats(0.0, 0.8)) * target
    quadratic_share = draw(st.floats(0.0, 0.9))
    variable = target - fixed
    linear = variable * (1 - quadratic_share) / best
    quadratic = variable * quadratic_share / (best * best)
    return CostCurve(fixed, linear, quadratic), best


def bounds(sizer: BatchSizer) -> tuple[int, int]:
    """The interval the size must stay in: a learnt ceiling wins over ``min_size``."""
    upper = sizer.max_size if sizer.ceiling is None else min(sizer.max_size, sizer.ceiling)
    return min(sizer.min_size, upper), upper


@st.composite
def sizers(draw: st.DrawFn) -> BatchSizer:
    """A batch sizer with drawn bounds and target."""
    min_size = draw(st.integers(1, 500))
    max_size = draw(st.integers(min_size, 200_000))
    return BatchSizer(
        target_latency=draw(st.floats(0.1, 10.0)),
        min_size=min_size,
        max_size=max_size,
        initial_size=draw(st.integers(1, 300_000)),
    )


observations = st.lists(
    st.tuples(
        st.integers(1, 10**7),  # requested
        st.none() | st.integers(0, 10**7),  # deleted
        st.none() | st.floats(0.0, 1e4),  # latency
        st.sampled_from(OUTCOMES),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(sizer=sizers(), steps=observations)
def test_batch_size_stays_within_bounds_for_any_observation(
    sizer: BatchSizer, steps: list[tuple[int, int | None, float | None, Outcome]]
) -> None:
    """Whatever calls report, in whatever order, the size stays an integer within its bounds."""
    previous_ceiling = sizer.ceiling
    for requested, deleted, latency, outcome in steps:
        size = sizer.observe(requested=requested, deleted=deleted, latency=latency, outcome=outcome)
        low, high = bounds(sizer)
        assert isinstance(size, int)
        assert low <= size <= high
        if previous_ceiling is not None:
            assert sizer.ceiling is not None
            assert sizer.ceiling <= previous_ceiling
        previous_ceiling = sizer.ceiling


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    target=st.floats(0.2, 5.0),
    min_size=st.integers(SMALLEST_STEPPABLE, 100),
    max_size=st.integers(100, 200_000),
    initial=st.integers(1, 200_000),
    faults=st.lists(st.sampled_from(OUTCOMES), max_size=30),
)
def test_batch_size_converges_on_any_cost_curve_after_any_faults(
    data: st.DataObject,
    target: float,
    min_size: int,
    max_size: int,
    initial: int,
    faults: list[Outcome],
) -> None:
    """After any fault sequence, successful calls bring the latency to the target (or a bound)."""
    curve, best = data.draw(cost_curves(target))
    sizer = BatchSizer(
        target_latency=target, min_size=min_size, max_size=max_size, initial_size=initial
    )
    for outcome in faults:  # faults interleaved with successes on the curve
        requested = sizer.size
        latency = curve(requested) if outcome is Outcome.OK else None
        sizer.observe(
            requested=requested,
            deleted=requested if outcome is Outcome.OK else None,
            latency=latency,
            outcome=outcome,
        )
        low, high = bounds(sizer)
        assert low <= sizer.size <= high
    assume(sizer.ceiling is None or sizer.ceiling >= SMALLEST_STEPPABLE)
    for _ in range(80):
        requested = sizer.size
        sizer.observe(
            requested=requested, deleted=requested, latency=curve(requested), outcome=Outcome.OK
        )
    low, high = bounds(sizer)
    size = sizer.size
    assert low <= size <= high
    if best >= high:
        assert size == high or curve(size) >= target * 0.85, (size, high, best)
    elif best <= low:
        assert size == low or curve(size) <= target * 1.15, (size, low, best)
    else:
        assert target * 0.85 <= curve(size) <= target * 1.15, (size, best, curve(size))


def test_batch_size_climbs_from_a_tiny_size_on_an_overhead_dominated_server() -> None:
    """From one trace, the size climbs towards n* even when the fixed cost is most of the target."""
    # 0.75 s fixed + 5 ms per trace: 50 traces take the 1 s target; one trace takes 0.755 s.
    curve = CostCurve(fixed=0.75, linear=0.005, quadratic=0.0)
    sizer = BatchSizer(target_latency=1.0, min_size=1, max_size=1_000, initial_size=1)
    for _ in range(60):
        requested = sizer.size
        sizer.observe(
            requested=requested, deleted=requested, latency=curve(requested), outcome=Outcome.OK
        )
    assert 0.85 <= curve(sizer.size) <= 1.15, sizer.size


@settings(max_examples=200, deadline=None)
@given(
    max_limit=st.integers(1, 64),
    calls=st.lists(
        st.tuples(
            st.floats(0.0, 100.0),  # time step
            st.integers(0, 10_000),  # deleted
            st.floats(0.0, 60.0),  # latency
            st.sampled_from(OUTCOMES),
            st.integers(0, 100),  # waiting
        ),
        max_size=200,
    ),
)
def test_concurrency_limit_stays_within_one_and_max(
    max_limit: int, calls: list[tuple[float, int, float, Outcome, int]]
) -> None:
    """Whatever calls report, the number of calls allowed in flight stays in [1, max_limit]."""
    controller = ConcurrencyController(max_limit=max_limit)
    now = 0.0
    for step, deleted, latency, outcome, waiting in calls:
        now += step
        limit = controller.record(
            now=now, deleted=deleted, latency=latency, outcome=outcome, waiting=waiting
        )
        assert 1 <= limit <= max_limit
        assert limit == controller.limit


# -- backoff and the retry budget --------------------------------------------------------------


policies = st.builds(
    RetryPolicy,
    initial_backoff=st.floats(0.0, 100.0),
    max_backoff=st.floats(0.0, 1_000.0),
    multiplier=st.floats(1.0, 10.0),
    max_retry_after=st.floats(0.0, 1_000.0),
)


@settings(max_examples=300)
@given(
    policy=policies,
    attempt=st.integers(1, 10_000),
    random_value=st.floats(0.0, 1.0, exclude_max=True),
    retry_after=st.none() | st.floats(-1e6, 1e6),
)
def test_backoff_stays_within_zero_and_the_cap(
    policy: RetryPolicy, attempt: int, random_value: float, retry_after: float | None
) -> None:
    """Backoff lies in [0, cap]; a Retry-After (capped at max_retry_after) is a floor the
    jitter is added above: [floor, floor + cap]."""
    delay = compute_backoff(policy, attempt, random_value=random_value, retry_after=retry_after)
    growth = (
        math.inf
        if (attempt - 1) * math.log(max(policy.multiplier, 1.0)) > 700
        else policy.multiplier ** (attempt - 1)
    )
    cap = min(policy.max_backoff, policy.initial_backoff * growth)
    if policy.initial_backoff == 0 or policy.max_backoff == 0:
        cap = 0.0
    assert math.isfinite(delay)
    if retry_after is None:
        assert 0.0 <= delay <= cap
    else:
        floor = min(max(retry_after, 0.0), policy.max_retry_after)
        assert floor <= delay <= floor + cap


@settings(max_examples=200)
@given(
    initial=st.integers(0, 50),
    ratio=st.floats(0.0, 2.0),
    steps=st.lists(st.booleans(), max_size=300),
)
def test_retry_budget_is_never_overspent(initial: int, ratio: float, steps: list[bool]) -> None:
    """Retries never exceed initial + ratio * successes, and are not refused below that."""
    budget = RetryBudget(initial=initial, ratio=ratio)
    successes = spent = 0
    for is_success in steps:
        if is_success:
            budget.record_success()
            successes += 1
        elif budget.try_spend():
            spent += 1
            assert spent <= initial + math.ceil(ratio * successes + 1e-9)
        else:
            assert spent >= initial + math.floor(ratio * successes - 1e-9)
        assert spent == budget.retries
        assert budget.remaining >= 0
