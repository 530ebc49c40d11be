"""A fake clock on which a call reaches the server at the time it was sent (see SteppedClock)."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel

from tests.support.simulated_server import FakeClock

__all__ = ["SteppedClock"]


@dataclass(order=True)
class _Sleeper:
    deadline: float
    serial: int
    woken: anyio.Event = field(compare=False, default_factory=anyio.Event)


class SteppedClock(FakeClock):
    """A fake clock on which sleepers wake in the order of their deadlines, and the clock moves
    to a sleeper's deadline only after every other task has had ``turns`` turns: as on a real
    clock, a call reaches the server at the time it was sent.

    (:class:`FakeClock` moves the one shared clock by each sleep as soon as it begins, so
    there a call sent at ``t`` can reach the server a pacing gap later, after another waiter
    began its sleep, and the server's times of concurrent calls say nothing exact about the
    rate.)
    """

    def __init__(self, *, turns: int = 1_000) -> None:
        super().__init__()
        self.turns = turns
        self._sleepers: list[_Sleeper] = []  # a heap, earliest deadline first
        self._serial = 0

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock reaches ``now + seconds``, and move it there."""
        self.sleeps.append(seconds)
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        self._serial += 1
        me = _Sleeper(self.now + seconds, self._serial)
        heapq.heappush(self._sleepers, me)
        try:
            while True:
                for _ in range(self.turns):
                    await anyio.lowlevel.checkpoint()
                if self._sleepers[0] is me:
                    break
                await me.woken.wait()  # an earlier sleeper goes first, then wakes the next
                me.woken = anyio.Event()
        finally:
            self._sleepers.remove(me)
            heapq.heapify(self._sleepers)
            if self._sleepers:
                self._sleepers[0].woken.set()
        self.now = max(self.now, me.deadline)
