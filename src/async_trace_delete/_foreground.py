"""Pacing from what other clients feel: a canary, a foreground budget, a throttle hook.

The engine steers each delete to ``target_latency``, but that is the latency of its *own*
calls; the server's other users feel something else (on SQLite every write waits for a
delete's transaction, a UI's trace list waits for a worker). Tools that do this well watch
the database's health as others see it (gh-ost's ``--max-load`` and ``--throttle-http``,
pt-archiver's ``--max-lag``, CockroachDB's admission control). Here:

* **a canary**: while jobs run, one cheap request every ``canary_interval`` — a search of one
  trace in a running job's experiment, what a UI's trace list sends — timed, *not* through the
  engine's gate (it measures the server, not our queue);
* :class:`ForegroundGovernor` (pure) turns those latencies into a **share** in (0, 1] of the
  server the engine may take: a canary slower than ``foreground_budget`` halves it (once per
  episode: samples sent before the cut answered for it already), four calm canaries in a row
  (at most half the budget) raise it by half, up to 1. A server slower than the budget even
  when idle cannot be held to it: once eight canaries have answered, the budget in force is
  at least twice the fastest of them;
* the share scales all three levers at once: each call asks for ``share`` x the batch the
  sizer chose (so it holds the database ``share`` x as long), no call starts for
  ``latency x (1 - share) / share`` after one ends (a duty cycle of ``share``), and at most
  ``share`` x the learnt concurrency limit is in flight (at least 1);
* **a throttle hook** (``throttle_url``): polled every ``throttle_interval``; while it answers
  anything but 2xx, or cannot be reached, no call starts (gh-ost's ``--throttle-http``), so a
  user whose database metrics live elsewhere can pause the engine from there.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable

import anyio
import httpx
from anyio.abc import TaskGroup

from ._config import EngineConfig
from ._controls import Sizer
from ._events import Event, ForegroundChanged
from ._outcomes import Outcome
from ._scheduler import Scheduler

__all__ = [
    "ForegroundGovernor",
    "ForegroundWatch",
    "SharedSizer",
    "ThrottleHook",
    "canary_loop",
    "throttle_loop",
]

_MIN_SHARE = 1 / 16
_CALM_SAMPLES = 4  # calm canaries in a row before the share rises
_RAISE_FACTOR = 1.5
_FLOOR_FACTOR = 2.0  # the budget in force is at least this x the fastest canary ...
_FLOOR_AFTER = 8  # ... once this many canaries answered (the first ones meet our own load)
_THROTTLE_TIMEOUT = 5.0


class ForegroundGovernor:
    """Decides the engine's share of the server from canary latencies (pure: no clock, no I/O).

    Args:
        budget: Seconds a canary (another client's request) may take.
    """

    def __init__(self, budget: float) -> None:
        if not (math.isfinite(budget) and budget > 0):
            raise ValueError(f"budget must be a finite number > 0 (seconds), got {budget!r}")
        self._budget = budget
        self._share = 1.0
        self._fastest = math.inf
        self._samples = 0
        self._calm: deque[float] = deque(maxlen=_CALM_SAMPLES)
        self._last_cut_at = -math.inf

    @property
    def share(self) -> float:
        """The share of the server in force, in (0, 1]."""
        return self._share

    @property
    def budget(self) -> float:
        """The budget in force: the stated one, or twice the fastest canary if more (once
        eight canaries have answered)."""
        if self._samples < _FLOOR_AFTER:
            return self._budget
        return max(self._budget, _FLOOR_FACTOR * self._fastest)

    def observe(self, latency: float, *, sent_at: float, now: float) -> float:
        """One canary answered (or timed out) after ``latency`` s; return the share in force.

        Args:
            latency: Seconds it took (a canary that timed out: how long it was waited for).
            sent_at: When it was sent (a canary sent before the last cut is that episode).
            now: When it answered.
        """
        self._fastest = min(self._fastest, latency)
        self._samples += 1
        budget = self.budget
        if latency > budget:
            self._calm.clear()
            if sent_at >= self._last_cut_at:
                self._share = max(_MIN_SHARE, self._share / 2)
                self._last_cut_at = now
            return self._share
        if latency <= budget / 2:
            self._calm.append(latency)
        else:
            self._calm.clear()
        if len(self._calm) == _CALM_SAMPLES and self._share < 1.0:
            self._share = min(1.0, self._share * _RAISE_FACTOR)
            self._calm.clear()
        return self._share

    def __repr__(self) -> str:
        return f"ForegroundGovernor(share={self._share:g}, budget={self.budget:g})"


class SharedSizer:
    """A :class:`~._controls.Sizer` that asks for ``share()`` x what the sizer it wraps
    would (at least its minimum). The wrapped sizer learns from what was asked, so it still
    finds the batch that takes ``target_latency``; this one asks for a share of it."""

    def __init__(self, sizer: Sizer, share: Callable[[], float]) -> None:
        self._sizer = sizer
        self._share = share

    @property
    def size(self) -> int:
        """The wrapped sizer's size times the share, within its bounds."""
        full = self._sizer.size
        return max(min(self._sizer.min_size, full), min(full, int(full * self._share())))

    @property
    def min_size(self) -> int:
        """The wrapped sizer's minimum."""
        return self._sizer.min_size

    def observe(
        self, *, requested: int, deleted: int | None, latency: float | None, outcome: Outcome
    ) -> int:
        """Feed the wrapped sizer; return the size it now asks for, times the share."""
        self._sizer.observe(requested=requested, deleted=deleted, latency=latency, outcome=outcome)
        return self.size

    def __repr__(self) -> str:
        return f"SharedSizer({self._sizer!r}, share={self._share():g})"


async def canary_loop(
    *,
    governor: ForegroundGovernor,
    send: Callable[[], Awaitable[object] | None],
    apply: Callable[[float], None],
    interval: float,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
    emit: Callable[[Event], None],
    origin: float,
) -> None:
    """Send a canary every ``interval`` while ``send`` has one to send; feed the governor.

    ``send`` returns ``None`` when there is nothing to measure (no job running). A canary
    slower than the budget is counted at the budget's end, not when it answers: the engine
    yields while the server is still slow. Runs until cancelled.
    """
    while True:
        started = clock()
        request = send()
        if request is not None:
            latency = await _timed(request, limit=2 * governor.budget, clock=clock)
            old = governor.share
            share = governor.observe(latency, sent_at=started, now=clock())
            if share != old:
                apply(share)
                emit(
                    ForegroundChanged(
                        share=share,
                        canary_latency=latency,
                        budget=governor.budget,
                        at=clock() - origin,
                    )
                )
        await sleep(max(0.0, interval - (clock() - started)))


async def _timed(request: Awaitable[object], *, limit: float, clock: Callable[[], float]) -> float:
    """Seconds ``request`` took, at most ``limit`` (then it is abandoned); a failed canary
    counts as slow as the limit: a server that fails its users is not idle."""
    started = clock()
    with anyio.move_on_after(limit):
        try:
            await request
        except Exception:  # the canary's own failure: counted as slow, never raised
            return limit
        return clock() - started
    return limit


class ThrottleHook:
    """Asks a user's URL whether the engine may go on (2xx: yes; anything else, or no answer
    within 5 s: hold). The URL is never logged with credentials.

    Args:
        url: The URL to ask.
        transport: An httpx transport (the test seam).
    """

    def __init__(self, url: str, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._url = url
        self._http = httpx.AsyncClient(
            timeout=_THROTTLE_TIMEOUT, transport=transport, trust_env=False, follow_redirects=False
        )

    def __repr__(self) -> str:
        return "ThrottleHook(url=<hidden>)"

    async def may_go(self) -> bool:
        """Whether the hook says go."""
        try:
            response = await self._http.get(self._url)
        except httpx.HTTPError:
            return False
        return 200 <= response.status_code < 300

    async def aclose(self) -> None:
        await self._http.aclose()


async def throttle_loop(
    *,
    hook: ThrottleHook,
    gate: Callable[[bool], None],
    interval: float,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
) -> None:
    """Ask the hook now and every ``interval``; ``gate(False)`` holds every call until it
    says go again (``gate(True)``). The gate starts closed: nothing is sent before the
    first answer."""
    while True:
        started = clock()
        gate(await hook.may_go())
        await sleep(max(0.0, interval - (clock() - started)))


class ForegroundWatch:
    """The canary and the throttle hook of one engine, as its config asks (both optional).

    Args:
        config: The engine's settings (``foreground_budget``, ``throttle_url``, intervals).
        scheduler: Where the share and the gate take effect.
        canary: Sends one canary, or returns ``None`` when no job runs.
        clock / sleep: The engine's.
        emit: The engine's hooks.
        origin: The engine's opening (event times).
        transport: The engine's transport (the test seam), for the throttle hook too.
    """

    def __init__(
        self,
        *,
        config: EngineConfig,
        scheduler: Scheduler,
        canary: Callable[[], Awaitable[object] | None],
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        emit: Callable[[Event], None],
        origin: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._config = config
        self._scheduler = scheduler
        self._canary = canary
        self._clock = clock
        self._sleep = sleep
        self._emit = emit
        self._origin = origin
        self._scopes: list[anyio.CancelScope] = []  # one per loop: a scope is entered once
        url = config.throttle_url
        self._hook = (
            ThrottleHook(url.get_secret_value(), transport=transport) if url is not None else None
        )
        self.governor = (
            ForegroundGovernor(config.foreground_budget)
            if config.foreground_budget is not None
            else None
        )

    def start(self, group: TaskGroup) -> None:
        """Start what the config asks for in ``group`` (the gate closes until the hook's
        first answer)."""
        if self._hook is not None:
            self._scheduler.set_gate(False)
            self._start(group, self._throttle)
        if self.governor is not None:
            self._start(group, self._canaries)

    def _start(self, group: TaskGroup, loop: Callable[[], Awaitable[None]]) -> None:
        # A scope of its own (a scope is entered once), made now: aclose() may come before
        # the task first runs, and a scope cancelled before it is entered cancels at once.
        scope = anyio.CancelScope()
        self._scopes.append(scope)
        group.start_soon(self._watched, scope, loop)

    async def aclose(self) -> None:
        """Stop watching (once every job ended); the gate stays open from now on."""
        for scope in self._scopes:
            scope.cancel()
        self._scheduler.set_gate(True)
        if self._hook is not None:
            with anyio.CancelScope(shield=True):
                await self._hook.aclose()

    @staticmethod
    async def _watched(scope: anyio.CancelScope, loop: Callable[[], Awaitable[None]]) -> None:
        with scope:
            await loop()

    async def _throttle(self) -> None:
        assert self._hook is not None
        await throttle_loop(
            hook=self._hook,
            gate=self._scheduler.set_gate,
            interval=self._config.throttle_interval,
            clock=self._clock,
            sleep=self._sleep,
        )

    async def _canaries(self) -> None:
        assert self.governor is not None
        await canary_loop(
            governor=self.governor,
            send=self._canary,
            apply=self._scheduler.set_share,
            interval=self._config.canary_interval,
            clock=self._clock,
            sleep=self._sleep,
            emit=self._emit,
            origin=self._origin,
        )
