"""A virtual clock for pacing tests: time moves only when every task waits on it."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import anyio


class VirtualClock:
    """A clock that jumps to the earliest sleeper's deadline once every task is blocked."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, anyio.Event]] = []

    def __call__(self) -> float:
        """The current virtual time."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock reaches ``now + seconds``."""
        woken = anyio.Event()
        self._sleepers.append((self.now + seconds, woken))
        await woken.wait()

    async def run(self, *work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``work`` concurrently, moving the clock whenever all of it waits."""
        async with anyio.create_task_group() as group:
            for item in work:
                group.start_soon(item)
            while True:
                await anyio.wait_all_tasks_blocked()
                if not self._sleepers:
                    break
                deadline = min(at for at, _ in self._sleepers)
                self.now = max(self.now, deadline)
                due = [entry for entry in self._sleepers if entry[0] <= self.now]
                self._sleepers = [entry for entry in self._sleepers if entry[0] > self.now]
                for _, woken in due:
                    woken.set()
