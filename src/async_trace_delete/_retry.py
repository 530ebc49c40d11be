"""Retry decisions and backoff maths: which failures to retry, how long to wait, when to stop.

Everything here is pure: the engine passes in the error, the attempt number, the elapsed time
and a random number, and does the sleeping itself (as stamina keeps ``_compute_backoff``
pure).

* :func:`classify` sorts a failure into RETRY (the server was busy or the road to it broke),
  SHRINK (the batch is too large for the backend: retrying the same size cannot work) or FAIL
  (the request itself is wrong, or we may not do it: retrying cannot help).
* :func:`compute_backoff` is exponential backoff with *full jitter*, ``uniform(0, min(cap,
  base * multiplier ** (attempt - 1)))``, from the AWS Architecture Blog's "Exponential
  Backoff And Jitter" (2015): of the schemes compared there it spreads competing clients best
  for the least total work. A server's ``Retry-After`` (honoured up to ``max_retry_after``)
  is a floor the jitter is added *above*, so clients told the same ``Retry-After`` do not
  come back in lock-step.
* :func:`should_retry` bounds one call's retries by attempts and by elapsed time, when the
  policy sets them (by default it does not: the engine bounds a job by its progress instead).
* :class:`RetryBudget` counts retries across the whole run against ``initial + ratio *
  successes`` (Finagle's ``RetryBudget``, gRPC's retry throttling, without their time decay).
  A spent budget does not fail the run: the engine slows every job down instead.
"""

from __future__ import annotations

import math
from fractions import Fraction

from pydantic import ConfigDict, Field

from ._checks import is_int
from ._exceptions import TraceDeleteError, UsageError
from ._outcomes import Outcome, RetryDecision
from ._validated import ValidatedModel

__all__ = [
    "RetryBudget",
    "RetryDecision",
    "RetryPolicy",
    "classify",
    "compute_backoff",
    "outcome_for",
    "should_retry",
]


class RetryPolicy(ValidatedModel):
    """How one delete call is retried.

    Attributes:
        max_attempts: Attempts per call, including the first; ``None`` (the default): no
            limit, the job is bounded by ``EngineConfig.progress_timeout`` instead.
        max_elapsed: Seconds one call may take across all its attempts and waits; ``None``
            (the default): no limit of its own.
        initial_backoff: The backoff cap of the first retry (seconds); 0 disables waiting.
        max_backoff: The largest backoff cap (seconds).
        multiplier: How the cap grows from one attempt to the next.
        max_retry_after: A server's ``Retry-After`` is honoured up to this (seconds).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    max_attempts: int | None = Field(default=None, ge=1)
    max_elapsed: float | None = Field(default=None, gt=0)
    initial_backoff: float = Field(default=0.5, ge=0)
    max_backoff: float = Field(default=30.0, ge=0)
    multiplier: float = Field(default=2.0, ge=1)
    max_retry_after: float = Field(default=120.0, ge=0)


def _backoff_cap(policy: RetryPolicy, attempt: int) -> float:
    """``min(max_backoff, initial_backoff * multiplier ** (attempt - 1))``, without overflow."""
    if policy.initial_backoff == 0 or policy.max_backoff == 0:
        return 0.0
    try:
        growth = policy.multiplier ** (attempt - 1)
    except OverflowError:  # far beyond any cap
        return policy.max_backoff
    return min(policy.max_backoff, policy.initial_backoff * growth)


def compute_backoff(
    policy: RetryPolicy,
    attempt: int,
    *,
    random_value: float,
    retry_after: float | None = None,
) -> float:
    """Return how long to wait before the next attempt (full jitter above a Retry-After floor).

    Args:
        policy: The retry policy.
        attempt: The number of the attempt that just failed (1 for the first).
        random_value: A uniform random number in ``[0, 1)``, drawn by the caller.
        retry_after: Seconds the server asked us to wait, if it did. Negative values (a date
            in the past) count as 0; values above ``policy.max_retry_after`` are capped.

    Returns:
        ``floor + random_value * cap``: ``cap`` is the attempt's backoff cap, ``floor`` the
        ``Retry-After`` (capped at ``max_retry_after``) or 0. Within ``[floor, floor +
        max_backoff]``.

    Raises:
        UsageError: ``attempt`` < 1, ``random_value`` outside ``[0, 1)``, or ``retry_after``
            not a number.
    """
    if not is_int(attempt) or attempt < 1:
        raise UsageError(f"attempt must be >= 1, got {attempt!r}")
    if not 0 <= random_value < 1:
        raise UsageError(f"random_value must be in [0, 1), got {random_value!r}")
    floor = 0.0
    if retry_after is not None:
        if math.isnan(retry_after):
            raise UsageError("retry_after must be a number, got nan")
        floor = min(max(retry_after, 0.0), policy.max_retry_after)
    return floor + random_value * _backoff_cap(policy, attempt)


def classify(error: BaseException) -> RetryDecision:
    """Decide what to do about a failed call: the error class's ``retry_decision``.

    ``ThrottledError``, ``ServerUnavailableError``, ``ServerError``, every ``TransportError``
    and ``InvalidResponseError`` are retried; ``BatchTooLargeError`` shrinks the batch;
    anything else (400, 401, 403, 404, a 3xx, a bug) fails at once.
    """
    if isinstance(error, TraceDeleteError):
        return error.retry_decision
    return RetryDecision.FAIL


def outcome_for(error: BaseException) -> Outcome | None:
    """What a failure tells the batch and concurrency controllers: the error class's
    ``outcome``.

    Returns:
        ``THROTTLED`` (429), ``TOO_LARGE``, ``UNAVAILABLE`` (503), ``TIMEOUT`` (read
        timeout), ``SERVER_ERROR`` (other retryable failures), or ``None`` for a failure
        that says nothing about the server's load (400, 401, 403, 404, a bug): do not feed
        those to the controllers.
    """
    if isinstance(error, TraceDeleteError):
        return error.outcome
    return None


def should_retry(policy: RetryPolicy, *, attempt: int, elapsed: float, next_delay: float) -> bool:
    """Return whether another attempt fits the policy.

    Args:
        policy: The retry policy.
        attempt: The number of the attempt that just failed (1 for the first).
        elapsed: Seconds since the call's first attempt started.
        next_delay: The backoff that would precede the next attempt.
    """
    if policy.max_attempts is not None and attempt >= policy.max_attempts:
        return False
    return policy.max_elapsed is None or elapsed + next_delay <= policy.max_elapsed


class RetryBudget:
    """A run-wide cap on retries: at most ``initial + ratio * successes`` of them.

    A few failures are retried freely; a server that keeps failing soon gets no more
    retries than a fraction of the calls that worked (Finagle ``RetryBudget``, gRPC retry
    throttling).

    Args:
        initial: Retries allowed before any call has succeeded.
        ratio: Retries earned per successful call.

    Raises:
        UsageError: ``initial`` < 0 or ``ratio`` negative or not finite.
    """

    def __init__(self, *, initial: int = 20, ratio: float = 0.2) -> None:
        if not is_int(initial) or initial < 0:
            raise UsageError(f"initial must be an integer >= 0, got {initial!r}")
        if not (math.isfinite(ratio) and ratio >= 0):
            raise UsageError(f"ratio must be a finite number >= 0, got {ratio!r}")
        self._initial = initial
        # Exact decimal arithmetic, so 15 successes at 0.2 earn 3 retries, not 3.0000000000000004.
        self._ratio = Fraction(repr(float(ratio)))
        self._retries = 0
        self._successes = 0

    @property
    def retries(self) -> int:
        """Retries spent so far."""
        return self._retries

    @property
    def successes(self) -> int:
        """Successful calls recorded so far."""
        return self._successes

    @property
    def allowed(self) -> int:
        """Retries the budget allows in total so far: ``initial + ratio * successes``."""
        return self._initial + math.ceil(self._ratio * self._successes)

    @property
    def remaining(self) -> int:
        """Retries that could be spent now."""
        return max(0, self.allowed - self._retries)

    def record_success(self) -> None:
        """Count one successful call (it earns ``ratio`` retries)."""
        self._successes += 1

    def try_spend(self) -> bool:
        """Spend one retry if the budget allows it; return whether it did."""
        if self._retries < self.allowed:
            self._retries += 1
            return True
        return False

    def __repr__(self) -> str:
        return f"RetryBudget(retries={self._retries}, successes={self._successes})"
