"""The shared rate: how call starts are spaced, and how throttling moves the rate.

Two parts, as everywhere in the engine: a pure decision and its enforcement.

* :class:`RateThrottle` decides the rate in force (pure: fed times, no clock). A push-back
  (a 429/503, or a retry over the run's budget) halves it once per *episode*: push-backs of
  calls sent before the last cut are the same congestion, already answered (TCP's one cut
  per window), so four simultaneous 429s halve it once, not four times. It never falls below
  1/16 of the configured rate, and steps back up by x1.5 after 5 successes in a row.
* A :class:`Pacer` enforces a rate: each call start waits in :meth:`Pacer.wait`, and starts
  are spaced evenly, one every ``1 / rate`` seconds, with no bursts.

  - :class:`ClockPacer` runs on any clock and sleep, in particular the engine's injected
    ones, so tests on a fake clock see the rate as it is (5 calls/s are 0.2 s apart).
  - :class:`LimiterPacer` is ``aiolimiter.AsyncLimiter``, which runs on the asyncio loop's
    own clock (``loop.time()``, ``loop.call_at``); it is correct only when the engine runs
    on that clock too. :func:`pacer_for` picks it then, a :class:`ClockPacer` otherwise.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
from aiolimiter import AsyncLimiter

from ._exceptions import UsageError

__all__ = ["ClockPacer", "LimiterPacer", "Pacer", "RateThrottle", "pacer_for"]

_MIN_RATE_FRACTION = 1 / 16  # throttling never slows the shared rate below this share
_RECOVERY_SUCCESSES = 5  # successes without push-back before the rate steps up again
_RECOVERY_FACTOR = 1.5

# A wake-up this close to the start it waited for takes it: float rounding of
# ``now + (start - now)`` must not turn into another sleep of a few ulps.
_EPSILON = 1e-9


def _check_rate(rate: float) -> None:
    if not (math.isfinite(rate) and rate > 0):
        raise UsageError(f"rate must be a finite number > 0 (calls per second), got {rate!r}")


class Pacer(Protocol):
    """Spaces call starts at a rate that can change while calls wait."""

    @property
    def rate(self) -> float:
        """The rate in force (call starts per second)."""
        ...

    def set_rate(self, rate: float) -> None:
        """Enforce ``rate`` from now on (at most the rate the pacer was built with)."""
        ...

    async def wait(self) -> None:
        """Return when the caller may start its call; the start is taken on return."""
        ...


class RateThrottle:
    """Decides the shared rate from push-backs and successes (pure: no clock, no I/O).

    Args:
        rate: The configured rate (calls per second); the rate never exceeds it.
    """

    def __init__(self, rate: float) -> None:
        _check_rate(rate)
        self._configured = rate
        self._rate = rate
        self._last_cut_at = -math.inf
        self._successes_since_pushback = 0

    @property
    def rate(self) -> float:
        """The rate in force."""
        return self._rate

    @property
    def configured(self) -> float:
        """The configured rate (the most it recovers to)."""
        return self._configured

    def push_back(self, *, now: float, sent_at: float | None) -> float:
        """The server said "slow down"; return the rate in force from now on.

        Args:
            now: When the push-back arrived (the engine's clock).
            sent_at: When the pushed-back call was sent. A call sent before the last cut
                belongs to the episode that cut already answered; ``None`` counts as a new
                episode.
        """
        self._successes_since_pushback = 0
        if sent_at is None or sent_at >= self._last_cut_at:
            self._last_cut_at = now
            self._rate = max(self._configured * _MIN_RATE_FRACTION, self._rate / 2)
        return self._rate

    def success(self) -> float:
        """A call succeeded; return the rate in force from now on."""
        self._successes_since_pushback += 1
        if self._rate < self._configured and self._successes_since_pushback >= _RECOVERY_SUCCESSES:
            self._successes_since_pushback = 0
            self._rate = min(self._configured, self._rate * _RECOVERY_FACTOR)
        return self._rate

    def __repr__(self) -> str:
        return f"RateThrottle(rate={self._rate:g}, configured={self._configured:g})"


class ClockPacer:
    """One call start every ``1 / rate`` seconds on the given clock: evenly, no bursts.

    Each start reserves the earliest next one, ``start + 1 / rate``, before any await, so two
    waiters never take the same start; waiters sleep until it is due and look again. A start
    is counted from when it happened, so a late wake-up never lets two calls through together.
    A slower rate lengthens the gap after the last start at once; a faster one counts from
    the next start on, so changing the rate never lets a call through early.

    Args:
        rate: Call starts per second.
        clock: Monotonic seconds.
        sleep: Awaitable sleep on that clock.
        last_start: When the last call started before this pacer took over (default: none).
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        last_start: float = -math.inf,
    ) -> None:
        _check_rate(rate)
        self._rate = rate
        self._clock = clock
        self._sleep = sleep
        self._last_start = last_start
        self._next_start = last_start + 1 / rate  # the earliest start of the next call

    @property
    def rate(self) -> float:
        """Call starts per second."""
        return self._rate

    def set_rate(self, rate: float) -> None:
        """Space starts at ``rate`` from now on (see the class docstring)."""
        _check_rate(rate)
        if rate < self._rate:
            self._next_start = max(self._next_start, self._last_start + 1 / rate)
        self._rate = rate

    async def wait(self) -> None:
        """Return when a start is due; it is taken (on the clock) on return."""
        while True:
            now = self._clock()
            if self._next_start - now <= _EPSILON:
                self._last_start = max(now, self._next_start)
                self._next_start = self._last_start + 1 / self._rate
                return
            await self._sleep(self._next_start - now)


class LimiterPacer:
    """``aiolimiter.AsyncLimiter`` on the running asyncio loop's clock.

    The limiter keeps the rate it was built with: rebuilding it would hand out a fresh start
    at once, and the calls waiting on the old one would not see the new rate. A cut rate is
    a :class:`ClockPacer` on the loop's clock in front of the limiter, taking over from the
    last start the limiter let through; it goes once the first start after the rate's full
    recovery has kept the gap the last cut start reserved. So changing the rate never lets a
    call through early.

    Must be created inside the running asyncio loop (aiolimiter binds to it).

    Args:
        rate: Call starts per second.
    """

    def __init__(self, rate: float) -> None:
        _check_rate(rate)
        self._configured = rate
        self._rate = rate
        self._limiter = AsyncLimiter(1, 1 / rate)
        self._loop_time = asyncio.get_running_loop().time
        self._last_start = -math.inf
        self._slower: ClockPacer | None = None  # while the rate is cut

    @property
    def rate(self) -> float:
        """Call starts per second."""
        return self._rate

    def set_rate(self, rate: float) -> None:
        """Enforce ``rate`` from now on; above the rate it was built with, that one holds."""
        _check_rate(rate)
        self._rate = min(rate, self._configured)
        if self._slower is not None:
            self._slower.set_rate(self._rate)
        elif self._rate < self._configured:
            self._slower = ClockPacer(
                self._rate, clock=self._loop_time, sleep=anyio.sleep, last_start=self._last_start
            )

    async def wait(self) -> None:
        """Return when the limiter (and a cut rate, if one is in force) lets a call start."""
        slower = self._slower
        if slower is not None:
            await slower.wait()
            if self._rate == self._configured and self._slower is slower:
                self._slower = None  # recovered, and the last cut gap is kept: the limiter alone
        await self._limiter.acquire()
        self._last_start = self._loop_time()


def pacer_for(
    rate: float,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
) -> Pacer:
    """The pacer for an engine running on ``clock`` and ``sleep``.

    aiolimiter where it is correct: on the default clock and sleep (``time.monotonic``,
    ``anyio.sleep``), which are the asyncio loop's own, inside a running asyncio loop. Any
    other clock (a test's fake one) or event loop gets a :class:`ClockPacer` on it.
    """
    if clock is time.monotonic and sleep is anyio.sleep and _in_asyncio_loop():
        return LimiterPacer(rate)
    return ClockPacer(rate, clock=clock, sleep=sleep)


def _in_asyncio_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # e.g. anyio on trio: aiolimiter cannot run there
        return False
    return True
