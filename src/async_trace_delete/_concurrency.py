"""Adaptive concurrency: how many delete calls the engine keeps in flight against one server.

Parallel calls pay on some backends and hurt on others. On SQLite a single writer serialises
every delete: calls in parallel finish no sooner than one after another, and each takes longer
while other clients wait. On PostgreSQL four experiments in parallel deleted 1.3 to 2.1 times
as fast as one at a time. :class:`ConcurrencyController` finds out which case it is in by
measuring, and keeps the parallelism only where it buys throughput.

The algorithm is hill climbing on measured throughput, in windows:

* A **window** is a run of completed calls at one limit. It closes after
  ``max(window_calls, 2 * limit)`` completions, enough for every slot to turn over twice.
  Its throughput is the traces deleted by the calls that completed in it, divided by the time
  from the window's start to its last completion. Windows tile the timeline: a window starts
  when the previous one closed, so idle time and queueing count against the limit. The very
  first window starts when its first call started (``now - latency``).
* After a **limit change** the calls still in flight were scheduled under the old limit, so
  the next ``old_limit - 1`` completions are a warm-up that is not measured; the window
  starts at the last of them.
* **Probe up** (limit + 1, at most ``max_limit``) only after a window in which demand exceeded
  the limit: in most of its completions, other calls were ready to run but blocked on the
  limit (``waiting > 0``). Without demand, a higher limit cannot be told apart.
* **Judge a probe** by its window: keep the new limit if its throughput is at least
  ``(1 + min_gain)`` times the window before it, its mean latency is at most
  ``target_latency * latency_tolerance`` *and* its mean batch is within ``batch_tolerance``
  of that window's: a gain that bigger batches explain (the sizer still ramping) says
  nothing of parallelism; on a server that serialises deletes the batch shrinks instead, as
  calls in parallel wait for each other (on SQLite, keeping probes on a ramp held 1.85 calls
  in flight and doubled other clients' p99). Then probe again if demand is still there (the
  climb). Otherwise go back to the previous limit and do not probe for ``reprobe_interval``
  windows; each further rejection in a row doubles that wait (up to ``max_reprobe_interval``),
  and a kept probe resets it. A probe judged early, while the batch sizer still ramps from
  small batches, can fail on a backend where parallelism pays once batches are larger (on
  PostgreSQL a first probe at 1,000 traces per call was rejected in two of four benchmark
  runs): it gets a second chance soon. On a backend where it never pays (SQLite), probes
  become rare quickly.
* **Overload** (THROTTLED, UNAVAILABLE, TIMEOUT, SERVER_ERROR) halves the limit at once
  (at least 1) and restarts the window, as TCP halves its window on loss. Overload answers
  from calls still in flight from before the cut (the warm-up) do not cut again: one cut per
  congestion episode. Reprobing then waits as after a rejected probe.

Anchors: Netflix concurrency-limits separates the limit algorithm (``Limit.onSample``) from its
enforcement, and its Vegas and Gradient limits grow the limit while latency does not rise; this
controller grows it while throughput rises, which is what a single-writer database cannot fake.
Hill climbing with a revert on no gain is how .NET's thread pool sizes itself; the start at 1
and growth by probing follow TCP slow start's caution (Jacobson, 1988). The controller is pure:
no clock (``now`` is passed in), no I/O, no asyncio; the engine enforces the limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Required, Self, TypedDict, Unpack, overload

from pydantic import ConfigDict, Field, StrictInt, model_validator

from ._batching import OVERLOAD_OUTCOMES, Outcome
from ._checks import check_count, check_seconds
from ._controls import settings_from
from ._exceptions import UsageError
from ._validated import ValidatedModel

__all__ = [
    "ConcurrencyController",
    "FixedLimit",
    "LimitSettings",
    "LimitValues",
    "Window",
    "WindowResult",
]


class LimitSettings(ValidatedModel):
    """How a :class:`ConcurrencyController` climbs (frozen; validated field by field).

    Attributes:
        max_limit: The highest limit it may reach (the user's cap).
        initial_limit: Where it starts (default 1: prove parallelism pays before using it);
            at most ``max_limit``.
        target_latency: The latency the batch sizer aims at (seconds); a probe whose calls
            take longer than ``target_latency * latency_tolerance`` on average is rejected.
        min_gain: Relative throughput gain a probe must show to be kept.
        batch_tolerance: A probe is kept only if its window's mean batch is within this
            relative distance of the window before it: a gain that bigger batches explain
            (the sizer still ramping) says nothing of parallelism, and on a server that
            serialises deletes the batch shrinks as the calls in parallel wait for each other.
        latency_tolerance: See ``target_latency`` (at least 1).
        window_calls: Minimum completions per window.
        reprobe_interval: Windows to wait after a rejected probe or an overload; doubled
            after each further one in a row, reset by a kept probe.
        max_reprobe_interval: The most windows that wait can grow to (a value below
            ``reprobe_interval`` means ``reprobe_interval``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    max_limit: Annotated[StrictInt, Field(ge=1)]
    initial_limit: Annotated[StrictInt, Field(ge=1)] = 1
    target_latency: Annotated[float, Field(gt=0)] = 1.0
    min_gain: Annotated[float, Field(ge=0)] = 0.10
    batch_tolerance: Annotated[float, Field(gt=0)] = 0.25
    latency_tolerance: Annotated[float, Field(ge=1)] = 1.5
    window_calls: Annotated[StrictInt, Field(ge=1)] = 4
    reprobe_interval: Annotated[StrictInt, Field(ge=0)] = 2
    max_reprobe_interval: Annotated[StrictInt, Field(ge=0)] = 16

    @model_validator(mode="after")
    def _start_within_cap(self) -> Self:
        if self.initial_limit > self.max_limit:
            raise ValueError(
                f"initial_limit ({self.initial_limit}) must be <= max_limit ({self.max_limit})"
            )
        return self


class LimitValues(TypedDict, total=False):
    """The fields of :class:`LimitSettings` as keyword arguments of
    :class:`ConcurrencyController` (``max_limit`` is required there too)."""

    max_limit: Required[int]
    initial_limit: int
    target_latency: float
    min_gain: float
    batch_tolerance: float
    latency_tolerance: float
    window_calls: int
    reprobe_interval: int
    max_reprobe_interval: int


class FixedLimit:
    """A concurrency limit that never changes: ``limit`` calls may always be in flight.

    Args:
        limit: Calls allowed in flight.

    Raises:
        UsageError: ``limit`` is not an integer >= 1.
    """

    def __init__(self, limit: int) -> None:
        check_count("limit", limit, minimum=1)
        self._limit = limit

    @property
    def limit(self) -> int:
        """Calls allowed in flight."""
        return self._limit

    def record(
        self, *, now: float, deleted: int, latency: float, outcome: Outcome, waiting: int
    ) -> int:
        """Ignore the completed call; return the fixed limit."""
        return self._limit

    def __repr__(self) -> str:
        return f"FixedLimit({self._limit})"


@dataclass(frozen=True, slots=True)
class WindowResult:
    """What one closed measurement window saw.

    Attributes:
        calls: How many calls completed in the window.
        deleted: Traces those calls deleted.
        duration: Seconds from the window's start to its last completion.
        throughput: ``deleted / duration`` (traces per second).
        mean_latency: Mean latency of the calls in the window (seconds).
        demand: Whether calls were waiting on the limit in most completions.
    """

    calls: int
    deleted: int
    duration: float
    throughput: float
    mean_latency: float
    demand: bool

    @property
    def mean_batch(self) -> float:
        """Traces deleted per call in the window."""
        return self.deleted / self.calls if self.calls else 0.0


class Window:
    """The open measurement window: the completions counted since it started.

    Args:
        start: When it started; ``None``: when its first call started (``now - latency`` of
            the first completion).
    """

    def __init__(self, start: float | None = None) -> None:
        self._start = start
        self._calls = 0
        self._deleted = 0
        self._latency_sum = 0.0
        self._demand_calls = 0  # completions that saw calls waiting on the limit

    @property
    def calls(self) -> int:
        """Completions counted so far."""
        return self._calls

    def add(self, *, now: float, deleted: int, latency: float, waiting: int) -> None:
        """Count one completed call."""
        if self._start is None:
            self._start = now - latency
        self._calls += 1
        self._deleted += deleted
        self._latency_sum += latency
        self._demand_calls += waiting > 0

    def close(self, now: float) -> WindowResult:
        """What the window saw, measured up to ``now`` (its last completion)."""
        assert self._start is not None, "a window closes after at least one completion"
        duration = now - self._start
        if duration > 0:
            throughput = self._deleted / duration
        else:
            throughput = math.inf if self._deleted > 0 else 0.0
        return WindowResult(
            calls=self._calls,
            deleted=self._deleted,
            duration=duration,
            throughput=throughput,
            mean_latency=self._latency_sum / self._calls,
            demand=2 * self._demand_calls > self._calls,
        )


class ConcurrencyController:
    """Decides how many delete calls may be in flight, from completed calls only.

    Give either ``settings`` or its fields as keywords
    (``ConcurrencyController(max_limit=8, target_latency=0.5)``).

    Args:
        settings: The controller's settings.
        **values: Fields of :class:`LimitSettings`, when ``settings`` is not given.

    Raises:
        UsageError: a value is out of range (the message names the field), or both
            ``settings`` and fields were given.
    """

    @overload
    def __init__(self, *, settings: LimitSettings) -> None: ...

    @overload
    def __init__(self, **values: Unpack[LimitValues]) -> None: ...

    def __init__(self, *, settings: LimitSettings | None = None, **values: Any) -> None:
        if settings is not None and values:
            raise UsageError("give ConcurrencyController either settings or its fields, not both")
        if settings is None:
            settings = settings_from(LimitSettings, values)
        self._settings = settings
        self._limit = settings.initial_limit
        self._max_reprobe_interval = max(settings.max_reprobe_interval, settings.reprobe_interval)
        self._next_cooldown = settings.reprobe_interval  # doubles with each rejection in a row

        self._previous: WindowResult | None = None  # the last closed window
        self._probe_from: int | None = None  # set while the current window judges a probe
        self._cooldown = 0  # windows left before probing is allowed again
        self._warmup = 0  # completions to skip before the next window starts
        self._after_overload = False  # the warm-up follows an overload cut
        self._window = Window()

    @property
    def settings(self) -> LimitSettings:
        """The settings it was built with."""
        return self._settings

    @property
    def limit(self) -> int:
        """How many delete calls may be in flight now."""
        return self._limit

    @property
    def max_limit(self) -> int:
        """The configured cap."""
        return self._settings.max_limit

    @property
    def probing(self) -> bool:
        """True while the current window is judging a probe."""
        return self._probe_from is not None

    def record(
        self,
        *,
        now: float,
        deleted: int,
        latency: float,
        outcome: Outcome,
        waiting: int,
    ) -> int:
        """Learn from one completed call and return the (possibly new) limit.

        Args:
            now: When the call completed, on the engine's monotonic clock (seconds).
            deleted: Traces the call deleted (0 if it failed or is unknown).
            latency: Seconds the call took.
            outcome: How the call ended.
            waiting: Calls ready to run but blocked on the limit when this one completed.

        Returns:
            The limit to enforce from now on.

        Raises:
            UsageError: a number is negative or not finite.
        """
        if not math.isfinite(now):
            raise UsageError(f"now must be a finite number, got {now!r}")
        check_seconds("latency", latency)
        check_count("deleted", deleted, minimum=0)
        check_count("waiting", waiting, minimum=0)

        if outcome in OVERLOAD_OUTCOMES:
            self._on_overload(now)
            return self._limit
        if self._warmup > 0:
            self._warmup -= 1
            if self._warmup == 0:
                self._after_overload = False
                self._window = Window(start=now)
            return self._limit

        self._window.add(now=now, deleted=deleted, latency=latency, waiting=waiting)
        if self._window.calls >= max(self._settings.window_calls, 2 * self._limit):
            self._close_window(now)
        return self._limit

    def _on_overload(self, now: float) -> None:
        if self._after_overload and self._warmup > 0:
            # In flight since the last cut: the same congestion episode, already answered.
            self._warmup -= 1
            if self._warmup == 0:
                self._after_overload = False
                self._window = Window(start=now)
            return
        old = self._limit
        self._limit = max(1, old // 2)
        self._probe_from = None
        self._previous = None
        self._start_cooldown()
        # The calls in flight now were scheduled under the old limit (this one has finished).
        self._warmup = old - 1
        self._after_overload = self._warmup > 0
        self._window = Window(start=now)

    def _close_window(self, now: float) -> None:
        window = self._window.close(now)
        settings = self._settings
        old = self._limit
        if self._probe_from is not None:
            baseline = self._previous
            kept = (
                baseline is not None
                and window.throughput >= baseline.throughput * (1 + settings.min_gain)
                and window.mean_latency <= settings.target_latency * settings.latency_tolerance
                and _comparable(window.mean_batch, baseline.mean_batch, settings.batch_tolerance)
            )
            if kept:
                self._probe_from = None
                self._previous = window
                self._next_cooldown = settings.reprobe_interval
                self._maybe_probe(window)
            else:
                self._limit = self._probe_from
                self._probe_from = None
                self._start_cooldown()
                # Keep the window from before the probe as the reference at this limit.
        else:
            self._previous = window
            if self._cooldown > 0:
                self._cooldown -= 1
            else:
                self._maybe_probe(window)
        # The calls still in flight were scheduled under the old limit (this one has finished):
        # skip them, then start measuring. Without any, the next window starts now.
        self._warmup = old - 1 if self._limit != old else 0
        self._window = Window(start=now)

    def _start_cooldown(self) -> None:
        self._cooldown = self._next_cooldown
        self._next_cooldown = min(2 * self._next_cooldown, self._max_reprobe_interval)

    def _maybe_probe(self, window: WindowResult) -> None:
        if window.demand and self._limit < self._settings.max_limit:
            self._probe_from = self._limit
            self._limit += 1

    def __repr__(self) -> str:
        return (
            f"ConcurrencyController(limit={self._limit}, max_limit={self._settings.max_limit}, "
            f"probing={self.probing})"
        )


def _comparable(batch: float, baseline: float, tolerance: float) -> bool:
    """Whether two windows' mean batches are within ``tolerance`` of each other (relative to
    the smaller one)."""
    low, high = min(batch, baseline), max(batch, baseline)
    return low > 0 and high <= low * (1 + tolerance)
