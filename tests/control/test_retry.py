"""Tests of retry decisions, backoff maths and the run-wide retry budget."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_trace_delete import SpecError
from async_trace_delete import _exceptions as errors
from async_trace_delete._batching import Outcome
from async_trace_delete._retry import (
    RetryBudget,
    RetryDecision,
    RetryPolicy,
    classify,
    compute_backoff,
    outcome_for,
    should_retry,
)

ALMOST_ONE = 0.999_999


def backoffs(policy: RetryPolicy, random_value: float, attempts: int = 8) -> list[float]:
    """The backoff after each of the first ``attempts`` failed attempts."""
    return [
        compute_backoff(policy, attempt, random_value=random_value)
        for attempt in range(1, attempts + 1)
    ]


def test_default_policy() -> None:
    """The defaults are the documented ones."""
    policy = RetryPolicy()
    # No per-call limit: a job is bounded by EngineConfig.progress_timeout instead.
    assert (policy.max_attempts, policy.max_elapsed) == (None, None)
    assert (policy.initial_backoff, policy.max_backoff, policy.multiplier) == (0.5, 30.0, 2.0)
    assert policy.max_retry_after == 120.0


def test_backoff_with_zero_random_value_is_zero() -> None:
    """Full jitter can draw no wait at all."""
    assert backoffs(RetryPolicy(), 0.0) == [0.0] * 8


def test_backoff_sequence_at_half() -> None:
    """At 0.5 the wait is half the exponential cap, which stops at ``max_backoff``."""
    assert backoffs(RetryPolicy(), 0.5) == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]


def test_backoff_sequence_near_one() -> None:
    """Just below 1 the wait approaches the cap: 0.5, 1, 2, ... 30, 30."""
    expected = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoffs(RetryPolicy(), ALMOST_ONE) == pytest.approx(expected, rel=1e-5)
    delays = backoffs(RetryPolicy(), ALMOST_ONE)
    assert all(delay < cap for delay, cap in zip(delays, expected, strict=True))


def test_backoff_with_other_multiplier_and_cap() -> None:
    """Multiplier and cap are honoured."""
    policy = RetryPolicy(initial_backoff=1.0, multiplier=3.0, max_backoff=10.0)
    assert backoffs(policy, 0.5, attempts=4) == [0.5, 1.5, 4.5, 5.0]


def test_backoff_does_not_overflow_on_huge_attempts() -> None:
    """An absurd attempt number gives the cap, not an OverflowError."""
    assert compute_backoff(RetryPolicy(), 100_000, random_value=0.5) == 15.0


def test_backoff_does_not_overflow_with_a_tiny_initial_backoff() -> None:
    """A denormal initial backoff with many attempts gives the cap (found by hypothesis)."""
    policy = RetryPolicy(initial_backoff=5e-324, max_backoff=1e4, multiplier=1.5)
    assert compute_backoff(policy, 10_000, random_value=0.5) == 5e3


def test_zero_initial_backoff_never_waits() -> None:
    """A policy with no backoff (for tests) never waits unless the server asks."""
    policy = RetryPolicy(initial_backoff=0.0)
    assert backoffs(policy, ALMOST_ONE) == [0.0] * 8
    assert compute_backoff(policy, 1, random_value=0.5, retry_after=2.0) == 2.0


def test_retry_after_is_a_floor_the_jitter_is_added_above() -> None:
    """A server's Retry-After is waited at least, and the jitter comes on top of it, so
    clients told the same Retry-After do not come back in lock-step."""
    policy = RetryPolicy()
    assert compute_backoff(policy, 1, random_value=0.0, retry_after=7.0) == 7.0
    assert compute_backoff(policy, 1, random_value=0.5, retry_after=7.0) == 7.25
    assert compute_backoff(policy, 6, random_value=0.5, retry_after=1.0) == 9.0
    draws = {compute_backoff(policy, 3, random_value=r / 10, retry_after=4.0) for r in range(10)}
    assert len(draws) == 10
    assert min(draws) == 4.0


def test_retry_after_is_capped() -> None:
    """A Retry-After beyond ``max_retry_after`` is cut to it; a negative one counts as 0."""
    policy = RetryPolicy(max_retry_after=60.0)
    assert compute_backoff(policy, 1, random_value=0.0, retry_after=3_600.0) == 60.0
    assert compute_backoff(policy, 1, random_value=0.5, retry_after=3_600.0) == 60.25
    assert compute_backoff(policy, 1, random_value=0.5, retry_after=-5.0) == 0.25


@pytest.mark.parametrize(
    ("attempt", "random_value", "retry_after"),
    [(0, 0.5, None), (1, 1.0, None), (1, -0.1, None), (1, 0.5, float("nan"))],
)
def test_backoff_rejects_bad_input(
    attempt: int, random_value: float, retry_after: float | None
) -> None:
    """Attempt numbers start at 1, random values lie in [0, 1), Retry-After is a number."""
    with pytest.raises(errors.UsageError):
        compute_backoff(RetryPolicy(), attempt, random_value=random_value, retry_after=retry_after)


@given(
    initial_backoff=st.floats(min_value=0, max_value=1e4),
    max_backoff=st.floats(min_value=0, max_value=1e4),
    multiplier=st.floats(min_value=1, max_value=100),
    max_retry_after=st.floats(min_value=0, max_value=1e4),
    attempt=st.integers(min_value=1, max_value=10_000),
    random_value=st.floats(min_value=0, max_value=1, exclude_max=True),
    retry_after=st.one_of(st.none(), st.floats(min_value=-1e6, max_value=1e6)),
)
def test_backoff_always_within_cap(
    initial_backoff: float,
    max_backoff: float,
    multiplier: float,
    max_retry_after: float,
    attempt: int,
    random_value: float,
    retry_after: float | None,
) -> None:
    """For any input the wait lies in ``[capped Retry-After, capped Retry-After + max_backoff]``."""
    policy = RetryPolicy(
        initial_backoff=initial_backoff,
        max_backoff=max_backoff,
        multiplier=multiplier,
        max_retry_after=max_retry_after,
    )
    delay = compute_backoff(policy, attempt, random_value=random_value, retry_after=retry_after)
    honoured = min(max(retry_after or 0.0, 0.0), max_retry_after)
    assert honoured <= delay <= honoured + max_backoff


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_attempts", 0),
        ("max_elapsed", 0.0),
        ("initial_backoff", -1.0),
        ("max_backoff", -1.0),
        ("multiplier", 0.5),
        ("max_retry_after", -1.0),
        ("max_elapsed", float("inf")),
        ("retries", 3),
    ],
)
def test_policy_rejects_bad_fields(field: str, value: float) -> None:
    """Each out-of-range or unknown field is refused, and the error names it."""
    with pytest.raises(SpecError, match=field):
        RetryPolicy(**{field: value})


def test_policy_is_frozen() -> None:
    """A policy cannot be changed after it is built."""
    policy = RetryPolicy()
    with pytest.raises(SpecError):
        policy.max_attempts = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("error", "decision", "outcome"),
    [
        (
            errors.ThrottledError("slow down", status_code=429),
            RetryDecision.RETRY,
            Outcome.THROTTLED,
        ),
        (
            errors.ServerUnavailableError("database is locked", status_code=503),
            RetryDecision.RETRY,
            Outcome.UNAVAILABLE,
        ),
        (errors.ServerError("boom", status_code=500), RetryDecision.RETRY, Outcome.SERVER_ERROR),
        (errors.TransportError("reset"), RetryDecision.RETRY, Outcome.SERVER_ERROR),
        (errors.ConnectError("refused"), RetryDecision.RETRY, Outcome.SERVER_ERROR),
        (errors.RequestTimeoutError("read timeout"), RetryDecision.RETRY, Outcome.TIMEOUT),
        (
            errors.InvalidResponseError("not JSON", status_code=200),
            RetryDecision.RETRY,
            Outcome.SERVER_ERROR,
        ),
        (
            errors.BatchTooLargeError("too many SQL variables", status_code=503),
            RetryDecision.SHRINK,
            Outcome.TOO_LARGE,
        ),
        (
            errors.InvalidParameterError(
                "bad", status_code=400, error_code="INVALID_PARAMETER_VALUE"
            ),
            RetryDecision.FAIL,
            None,
        ),
        (errors.NotFoundError("no such experiment", status_code=404), RetryDecision.FAIL, None),
        (errors.AuthenticationError("who are you", status_code=401), RetryDecision.FAIL, None),
        (
            errors.PermissionDeniedError("Permission denied", status_code=403),
            RetryDecision.FAIL,
            None,
        ),
        (errors.MlflowApiError("something else", status_code=418), RetryDecision.FAIL, None),
        (errors.RedirectError("to a login page", status_code=302), RetryDecision.FAIL, None),
        (errors.NotMlflowServerError("an HTML 404", status_code=404), RetryDecision.FAIL, None),
        (errors.OutOfSelectionError("another experiment"), RetryDecision.FAIL, None),
        (errors.ArtifactsUnavailableError("not served", status_code=503), RetryDecision.FAIL, None),
        (errors.ConflictingJobsError("two jobs"), RetryDecision.FAIL, None),
        (errors.NoProgressError("stuck"), RetryDecision.FAIL, None),
        (errors.UsageError("bad argument"), RetryDecision.FAIL, None),
        (errors.RuleError("a rule between fields"), RetryDecision.FAIL, None),
        (
            errors.SpecError("older_than: bad", model="DeleteSpec", validation_error=ValueError()),
            RetryDecision.FAIL,
            None,
        ),
        (errors.GuardrailError("refused"), RetryDecision.FAIL, None),
        (errors.EngineClosedError("closed"), RetryDecision.FAIL, None),
        (errors.RetryBudgetExhaustedError("spent"), RetryDecision.FAIL, None),
        (RuntimeError("a bug"), RetryDecision.FAIL, None),
        (KeyboardInterrupt(), RetryDecision.FAIL, None),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
)
def test_classify_and_outcome(
    error: BaseException, decision: RetryDecision, outcome: Outcome | None
) -> None:
    """Every error class maps to its retry decision and to what the controllers learn."""
    assert classify(error) is decision
    assert outcome_for(error) is outcome


def test_every_exported_error_is_classified() -> None:
    """No exception class in the hierarchy is forgotten by the table above."""
    covered = {
        "ArtifactsUnavailableError",
        "AuthenticationError",
        "BatchTooLargeError",
        "ConflictingJobsError",
        "ConnectError",
        "EngineClosedError",
        "GuardrailError",
        "InvalidParameterError",
        "InvalidResponseError",
        "MlflowApiError",
        "NoProgressError",
        "NotFoundError",
        "NotMlflowServerError",
        "OutOfSelectionError",
        "PermissionDeniedError",
        "RedirectError",
        "RequestTimeoutError",
        "RetryBudgetExhaustedError",
        "RuleError",
        "ServerError",
        "ServerUnavailableError",
        "SpecError",
        "ThrottledError",
        "TraceDeleteError",
        "TransportError",
        "UsageError",
    }
    assert set(errors.__all__) == covered
    assert classify(errors.TraceDeleteError("base")) is RetryDecision.FAIL


@pytest.mark.parametrize(
    ("attempt", "elapsed", "next_delay", "expected"),
    [
        (1, 0.0, 0.5, True),
        (5, 0.0, 0.5, True),
        (6, 0.0, 0.5, False),  # the sixth attempt was the last
        (2, 299.0, 1.0, True),  # exactly at the limit is allowed
        (2, 299.0, 1.5, False),
        (2, 301.0, 0.0, False),
    ],
)
def test_should_retry_by_attempts_and_elapsed(
    attempt: int, elapsed: float, next_delay: float, expected: bool
) -> None:
    """Another attempt must fit both the attempt count and the elapsed-time budget."""
    policy = RetryPolicy(max_attempts=6, max_elapsed=300.0)
    assert should_retry(policy, attempt=attempt, elapsed=elapsed, next_delay=next_delay) is expected


def test_should_retry_without_limits_by_default() -> None:
    """The default policy sets no per-call limit: the engine's progress timeout bounds a job."""
    policy = RetryPolicy()
    assert should_retry(policy, attempt=1_000, elapsed=86_400.0, next_delay=30.0)


def test_budget_exhausts_without_successes() -> None:
    """With no success, exactly ``initial`` retries are allowed."""
    budget = RetryBudget(initial=3, ratio=0.5)
    assert [budget.try_spend() for _ in range(5)] == [True, True, True, False, False]
    assert (budget.retries, budget.successes, budget.remaining) == (3, 0, 0)


def test_budget_refills_with_successes() -> None:
    """Each success earns ``ratio`` retries."""
    budget = RetryBudget(initial=1, ratio=0.2)
    assert budget.try_spend()
    assert not budget.try_spend()
    for _ in range(4):
        budget.record_success()
    assert budget.try_spend()  # 1 + 0.8: the budget allows a second retry
    assert not budget.try_spend()
    for _ in range(11):
        budget.record_success()
    assert budget.allowed == 4  # 1 + 0.2 * 15, computed exactly
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]


def test_budget_with_zero_initial_needs_successes() -> None:
    """With ``initial=0`` no retry happens before a success."""
    budget = RetryBudget(initial=0, ratio=1.0)
    assert not budget.try_spend()
    budget.record_success()
    assert budget.try_spend()


@pytest.mark.parametrize(
    ("arguments", "name"),
    [({"initial": -1}, "initial"), ({"ratio": -0.1}, "ratio"), ({"ratio": float("inf")}, "ratio")],
)
def test_budget_rejects_bad_settings(arguments: dict[str, float], name: str) -> None:
    """Each bad setting raises a ValueError naming it."""
    with pytest.raises(ValueError, match=name):
        RetryBudget(**arguments)  # type: ignore[arg-type]
