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
  ``(1 + min_gain)`` times the window before it *and* its mean latency is at most
  ``target_latency * latency_tolerance``; then probe again if demand is still there (the
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

from ._batching import OVERLOAD_OUTCOMES, Outcome
from ._exceptions import UsageError

__all__ = ["ConcurrencyController", "WindowResult"]


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True, slots=True)
class WindowResult:
    """What one closed measurement window saw.

    Attributes:
        limit: The limit in force during the window.
        calls: How many calls completed in the window.
        deleted: Traces those calls deleted.
        duration: Seconds from the window's start to its last completion.
        throughput: ``deleted / duration`` (traces per second).
        mean_latency: Mean latency of the calls in the window (seconds).
        demand: Whether calls were waiting on the limit in most completions.
    """

    limit: int
    calls: int
    deleted: int
    duration: float
    throughput: float
    mean_latency: float
    demand: bool


class ConcurrencyController:
    """Decides how many delete calls may be in flight, from completed calls only.

    Args:
        max_limit: The highest limit it may reach (the user's cap).
        initial_limit: Where it starts (default 1: prove parallelism pays before using it).
        target_latency: The latency the batch sizer aims at (seconds); a probe whose calls
            take longer than ``target_latency * latency_tolerance`` on average is rejected.
        min_gain: Relative throughput gain a probe must show to be kept.
        latency_tolerance: See ``target_latency``.
        window_calls: Minimum completions per window.
        reprobe_interval: Windows to wait after a rejected probe or an overload; doubled
            after each further one in a row, reset by a kept probe.
        max_reprobe_interval: The most windows that wait can grow to (at least
            ``reprobe_interval``).

    Raises:
        UsageError: an argument is out of range (the message names it).
    """

    def __init__(
        self,
        *,
        max_limit: int,
        initial_limit: int = 1,
        target_latency: float = 1.0,
        min_gain: float = 0.10,
        latency_tolerance: float = 1.5,
        window_calls: int = 4,
        reprobe_interval: int = 2,
        max_reprobe_interval: int = 16,
    ) -> None:
        _check_int("max_limit", max_limit, minimum=1)
        _check_int("initial_limit", initial_limit, minimum=1)
        if initial_limit > max_limit:
            raise UsageError(f"initial_limit ({initial_limit}) must be <= max_limit ({max_limit})")
        if not (math.isfinite(target_latency) and target_latency > 0):
            raise UsageError(f"target_latency must be > 0 seconds, got {target_latency!r}")
        if not (math.isfinite(min_gain) and min_gain >= 0):
            raise UsageError(f"min_gain must be >= 0, got {min_gain!r}")
        if not (math.isfinite(latency_tolerance) and latency_tolerance >= 1):
            raise UsageError(f"latency_tolerance must be >= 1, got {latency_tolerance!r}")
        _check_int("window_calls", window_calls, minimum=1)
        _check_int("reprobe_interval", reprobe_interval, minimum=0)
        _check_int("max_reprobe_interval", max_reprobe_interval, minimum=0)
        self._max_limit = max_limit
        self._limit = initial_limit
        self._target_latency = float(target_latency)
        self._min_gain = float(min_gain)
        self._latency_tolerance = float(latency_tolerance)
        self._window_calls = window_calls
        self._reprobe_interval = reprobe_interval
        self._max_reprobe_interval = max(max_reprobe_interval, reprobe_interval)
        self._next_cooldown = reprobe_interval  # doubles with each rejection in a row

        self._previous: WindowResult | None = None  # the last closed window
        self._last: WindowResult | None = None  # exposed for events and tests
        self._probe_from: int | None = None  # set while the current window judges a probe
        self._cooldown = 0  # windows left before probing is allowed again
        self._warmup = 0  # completions to skip before the next window starts
        self._after_overload = False  # the warm-up follows an overload cut
        # The open window: its start (None until its first completion), completions,
        # traces deleted, summed latency, and completions that saw calls waiting.
        self._window_start: float | None = None
        self._calls = 0
        self._deleted = 0
        self._latency_sum = 0.0
        self._demand_calls = 0

    @property
    def limit(self) -> int:
        """How many delete calls may be in flight now."""
        return self._limit

    @property
    def max_limit(self) -> int:
        """The configured cap."""
        return self._max_limit

    @property
    def last_window(self) -> WindowResult | None:
        """The most recently closed window, if any."""
        return self._last

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
        if not (math.isfinite(latency) and latency >= 0):
            raise UsageError(f"latency must be a finite number >= 0, got {latency!r}")
        if isinstance(deleted, bool) or deleted < 0:
            raise UsageError(f"deleted must be >= 0, got {deleted!r}")
        if isinstance(waiting, bool) or waiting < 0:
            raise UsageError(f"waiting must be >= 0, got {waiting!r}")

        if outcome in OVERLOAD_OUTCOMES:
            self._on_overload(now)
            return self._limit
        if self._warmup > 0:
            self._warmup -= 1
            if self._warmup == 0:
                self._after_overload = False
                self._reset_window(start=now)
            return self._limit

        if self._window_start is None:
            self._window_start = now - latency
        self._calls += 1
        self._deleted += deleted
        self._latency_sum += latency
        self._demand_calls += waiting > 0
        if self._calls >= max(self._window_calls, 2 * self._limit):
            self._close_window(now)
        return self._limit

    def _on_overload(self, now: float) -> None:
        if self._after_overload and self._warmup > 0:
            # In flight since the last cut: the same congestion episode, already answered.
            self._warmup -= 1
            if self._warmup == 0:
                self._after_overload = False
                self._reset_window(start=now)
            return
        old = self._limit
        self._limit = max(1, old // 2)
        self._probe_from = None
        self._previous = None
        self._start_cooldown()
        # The calls in flight now were scheduled under the old limit (this one has finished).
        self._warmup = old - 1
        self._after_overload = self._warmup > 0
        self._reset_window(start=now)

    def _close_window(self, now: float) -> None:
        assert self._window_start is not None
        duration = now - self._window_start
        if duration > 0:
            throughput = self._deleted / duration
        else:
            throughput = math.inf if self._deleted > 0 else 0.0
        window = WindowResult(
            limit=self._limit,
            calls=self._calls,
            deleted=self._deleted,
            duration=duration,
            throughput=throughput,
            mean_latency=self._latency_sum / self._calls,
            demand=2 * self._demand_calls > self._calls,
        )
        self._last = window
        old = self._limit
        if self._probe_from is not None:
            baseline = self._previous
            kept = (
                baseline is not None
                and window.throughput >= baseline.throughput * (1 + self._min_gain)
                and window.mean_latency <= self._target_latency * self._latency_tolerance
            )
            if kept:
                self._probe_from = None
                self._previous = window
                self._next_cooldown = self._reprobe_interval
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
        self._reset_window(start=now)

    def _start_cooldown(self) -> None:
        self._cooldown = self._next_cooldown
        self._next_cooldown = min(2 * self._next_cooldown, self._max_reprobe_interval)

    def _maybe_probe(self, window: WindowResult) -> None:
        if window.demand and self._limit < self._max_limit:
            self._probe_from = self._limit
            self._limit += 1

    def _reset_window(self, *, start: float | None) -> None:
        self._window_start = start
        self._calls = 0
        self._deleted = 0
        self._latency_sum = 0.0
        self._demand_calls = 0

    def __repr__(self) -> str:
        return (
            f"ConcurrencyController(limit={self._limit}, max_limit={self._max_limit}, "
            f"probing={self.probing})"
        )
