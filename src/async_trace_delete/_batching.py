"""Adaptive batch size: aim each delete call's latency at a target the user chooses.

A cutoff delete costs roughly ``a + b*n`` seconds for ``n`` traces (SQLite: ``a`` ≈ 0.33 s,
``b`` ≈ 0.09 ms; PostgreSQL: ``a`` ≈ 0.06 s), and while it runs other clients of the server
wait for it. Large batches amortise ``a``; small ones keep the server responsive. The user
states the trade-off as one number, ``target_latency``, and :class:`BatchSizer` looks for the
batch size whose call takes that long, on whatever backend it meets.

The algorithm, one observation (one finished call) at a time:

* **OK, full batch** (``deleted`` is unknown or ``>= requested``): ``factor = target /
  latency``. Within ``tolerance`` of 1 the size is kept (a dead band, so noise does not make it
  wander). Otherwise the next size is ``requested * min(factor, max_growth)``: shrink in
  proportion when the call was slow, grow multiplicatively, at most ``max_growth`` times, when
  it was fast. This is the proportional step of a gradient controller (Netflix
  concurrency-limits' ``Gradient2Limit`` scales its limit by ``target / measured``) and the
  pacing idea of pt-archiver's ``--sleep-coef`` (the work per step follows the measured time
  of the previous step). For ``latency = a + b*n`` the step converges to ``n* = (target - a)
  / b`` with contraction factor ``a / target``, without overshoot: a few steps from anywhere.
  When a step overshoots (the error changes sign: a convex cost curve, or noise), the next one
  is halved in log space (``sqrt(factor)``), as Rprop halves its step on a sign change; this
  keeps superlinear cost curves from ringing and halves the response to noise.
* **OK, short batch** (``deleted < requested``, the last batch of a job): it says nothing
  about capacity, so it never grows the size; if it was slow, the size shrinks to ``deleted *
  target / latency``.
* **Timeout** (no answer within the request timeout): multiplicative decrease,
  ``min(size, requested) * overload_factor``, the "MD" of AIMD as in TCP congestion control
  (Jacobson, "Congestion Avoidance and Control", 1988). Growth afterwards is the
  multiplicative growth above, capped per step, like TCP slow start.
* **THROTTLED, UNAVAILABLE, SERVER_ERROR** (a 429, "database is locked", a dropped
  connection, a gateway's 5xx): no change. They say the server or the road to it is busy or
  flaky, not that this batch is too big: the shared rate and the concurrency limit answer
  them. Cutting on them would pin the size at its minimum under random faults, and every
  call would then pay the per-call overhead for nothing.
* **TOO_LARGE** (SQLite's "too many SQL variables"): permanent for that size, so the size
  drops to ``requested // 2`` and that value becomes a **ceiling** the size never exceeds
  again.
* OK with an unknown latency (a cancelled call): no change.

The result is always an integer in ``[min_size, min(max_size, ceiling)]``; a learnt ceiling
wins over ``min_size`` (the server cannot take more, whatever the user asked).

**One sizer, several calls in flight.** The engine shares one sizer per server, so
observations interleave and some arrive late. Each step is therefore computed from
``requested``, the size that produced the latency, not from the current size, which other
observations may have moved. Overloads get the TCP treatment of one cut per congestion episode:
after a cut the sizer holds. Calls issued before the cut (they asked for more than the size
after the cut) can still shrink the size but not grow it, and their own overload errors do not
cut again; the first OK call of at most the post-cut size ends the hold.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Self, TypedDict, Unpack, overload

from pydantic import ConfigDict, Field, StrictInt, model_validator

from ._checks import check_count, check_seconds
from ._controls import settings_from
from ._exceptions import UsageError
from ._outcomes import Outcome
from ._validated import ValidatedModel

__all__ = [
    "OVERLOAD_OUTCOMES",
    "SIZE_OUTCOMES",
    "BatchSizer",
    "Outcome",
    "SizerSettings",
    "SizerValues",
]


OVERLOAD_OUTCOMES = frozenset(
    {Outcome.THROTTLED, Outcome.UNAVAILABLE, Outcome.TIMEOUT, Outcome.SERVER_ERROR}
)
"""Outcomes that say the server is struggling: the concurrency limit cuts hard."""

SIZE_OUTCOMES = frozenset({Outcome.TIMEOUT})
"""Overloads that say something about the batch size: the sizer cuts on these only."""


class SizerSettings(ValidatedModel):
    """How a :class:`BatchSizer` steers the batch size (frozen; validated field by field).

    Attributes:
        target_latency: Seconds one delete call should take (the user's knob: larger is
            faster overall, smaller keeps the server responsive to other clients).
        min_size: Never ask for fewer traces than this (unless a learnt ceiling is lower).
        max_size: Never ask for more traces than this (at least ``min_size``).
        initial_size: The first size; clamped into ``[min_size, max_size]``.
        max_growth: The most the size may grow in one step (a factor > 1).
        tolerance: Relative dead band around the target in which the size is kept.
        overload_factor: What the size is multiplied by after an overload (in (0, 1)).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    target_latency: Annotated[float, Field(gt=0)] = 1.0
    min_size: Annotated[StrictInt, Field(ge=1)] = 100
    max_size: Annotated[StrictInt, Field(ge=1)] = 100_000
    initial_size: Annotated[StrictInt, Field(ge=1)] = 1_000
    max_growth: Annotated[float, Field(gt=1)] = 2.0
    tolerance: Annotated[float, Field(ge=0, lt=1)] = 0.05
    overload_factor: Annotated[float, Field(gt=0, lt=1)] = 0.5

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.max_size < self.min_size:
            raise ValueError(f"max_size ({self.max_size}) must be >= min_size ({self.min_size})")
        return self


class SizerValues(TypedDict, total=False):
    """The fields of :class:`SizerSettings` as keyword arguments of :class:`BatchSizer`."""

    target_latency: float
    min_size: int
    max_size: int
    initial_size: int
    max_growth: float
    tolerance: float
    overload_factor: float


class BatchSizer:
    """Chooses how many traces the next delete call asks for.

    Give either ``settings`` or its fields as keywords
    (``BatchSizer(target_latency=0.5, max_size=10_000)``); unset fields keep their defaults.

    Args:
        settings: The sizer's settings.
        **values: Fields of :class:`SizerSettings`, when ``settings`` is not given.

    Raises:
        UsageError: a value is out of range (the message names the field), or both
            ``settings`` and fields were given.
    """

    @overload
    def __init__(self, *, settings: SizerSettings) -> None: ...

    @overload
    def __init__(self, **values: Unpack[SizerValues]) -> None: ...

    def __init__(self, *, settings: SizerSettings | None = None, **values: Any) -> None:
        if settings is not None and values:
            raise UsageError("give BatchSizer either settings or its fields, not both")
        if settings is None:
            settings = settings_from(SizerSettings, values)
        self._settings = settings
        self._ceiling: int | None = None
        # The size right after the last overload cut, while the sizer holds (see module doc).
        self._hold: int | None = None
        # +1 / -1: the last proportional step grew / shrank the size; 0: none since a reset.
        self._direction = 0
        self._size = self._clamp(settings.initial_size)

    @property
    def settings(self) -> SizerSettings:
        """The settings it was built with."""
        return self._settings

    @property
    def size(self) -> int:
        """How many traces the next delete call should ask for."""
        return self._size

    @property
    def ceiling(self) -> int | None:
        """The upper bound learnt from TOO_LARGE answers, or ``None`` if none came yet."""
        return self._ceiling

    @property
    def target_latency(self) -> float:
        """Seconds one delete call should take."""
        return self._settings.target_latency

    @property
    def min_size(self) -> int:
        """The configured lower bound."""
        return self._settings.min_size

    @property
    def max_size(self) -> int:
        """The configured upper bound."""
        return self._settings.max_size

    def observe(
        self,
        *,
        requested: int,
        deleted: int | None,
        latency: float | None,
        outcome: Outcome,
    ) -> int:
        """Learn from one finished delete call and return the size to ask for next.

        Args:
            requested: How many traces the call asked for (the size it was given).
            deleted: How many it deleted, or ``None`` if unknown.
            latency: Seconds the call took, or ``None`` if unknown (e.g. cancelled).
            outcome: How the call ended.

        Returns:
            The new :attr:`size`.

        Raises:
            UsageError: ``requested`` < 1, ``deleted`` < 0, or ``latency`` negative or not
                finite.
        """
        check_count("requested", requested, minimum=1)
        if deleted is not None:
            check_count("deleted", deleted, minimum=0)
        if latency is not None:
            check_seconds("latency", latency)

        if outcome is Outcome.TOO_LARGE:
            self._observe_too_large(requested)
        elif outcome in SIZE_OUTCOMES:
            self._observe_overload(requested)
        elif outcome is not Outcome.OK:
            pass  # busy or flaky, not too big: the rate and concurrency controllers answer
        elif latency is not None:
            self._observe_ok(requested, deleted, latency)
        return self._size

    def _observe_too_large(self, requested: int) -> None:
        halved = max(1, requested // 2)
        self._ceiling = halved if self._ceiling is None else min(self._ceiling, halved)
        self._size = self._clamp(min(self._size, halved))
        if self._hold is not None:
            self._hold = min(self._hold, self._size)

    def _observe_overload(self, requested: int) -> None:
        if self._hold is not None and requested > self._hold:
            # Issued before the last cut: the same congestion episode, already answered.
            return
        self._size = self._clamp(min(self._size, requested) * self._settings.overload_factor)
        self._hold = self._size
        self._direction = 0

    def _observe_ok(self, requested: int, deleted: int | None, latency: float) -> None:
        stale = self._hold is not None and requested > self._hold
        if not stale:
            self._hold = None
        target = self._settings.target_latency
        if deleted is not None and deleted < requested:
            # A short batch (the tail of a job) says nothing about capacity: shrink only.
            if deleted >= 1 and latency > target * (1 + self._settings.tolerance):
                self._size = self._clamp(min(self._size, deleted * target / latency))
            return
        factor = self._settings.max_growth if latency == 0 else target / latency
        if abs(1 - factor) <= self._settings.tolerance:
            self._direction = 0
            return
        if stale:
            # A call from before the last cut may confirm the cut, never undo it.
            self._size = self._clamp(min(requested * factor, self._size))
            return
        direction = 1 if factor > 1 else -1
        if direction == -self._direction:
            # The last step overshot (a convex cost curve, or noise): take half of this one,
            # in log space, so the loop damps instead of ringing.
            factor = math.sqrt(factor)
        self._direction = direction
        target = requested * min(factor, self._settings.max_growth)
        # Step by at least one trace: rounding must never turn a step into standing still
        # (size 1 on an overhead-dominated server would otherwise stay at 1 forever).
        if direction > 0:
            # A fast call smaller than the current size (the last chunk of a page, a call
            # sized before others grew it) says "at least this much": never shrink on it.
            grown = self._clamp(max(requested + 1, math.ceil(target)))
            self._size = max(self._size, grown)
        else:
            self._size = self._clamp(min(requested - 1, math.floor(target)))

    def _clamp(self, value: float) -> int:
        upper = self._settings.max_size
        if self._ceiling is not None:
            upper = min(upper, self._ceiling)
        lower = min(self._settings.min_size, upper)
        return max(lower, min(upper, max(1, round(value))))

    def __repr__(self) -> str:
        return (
            f"BatchSizer(size={self._size}, ceiling={self._ceiling}, "
            f"target_latency={self._settings.target_latency:g})"
        )
