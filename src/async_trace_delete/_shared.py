"""What every job of one engine shares, as two frozen bundles.

* :class:`Runtime` — the clock, the sleep and the random source (injected in tests);
* :class:`SharedState` — the server's client, the gate every call passes, the run-wide retry
  budget and the batch sizers learnt for the server.

Both are built once when the engine opens and never re-assigned; the controllers inside
keep their own state behind their own methods.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from ._batching import BatchSizer
from ._client import TracesClient
from ._config import EngineConfig
from ._events import Event
from ._retry import RetryBudget
from ._scheduler import Scheduler

__all__ = ["Runtime", "SharedState"]


@dataclass(frozen=True)
class Runtime:
    """The engine's time and chance: injected in tests, real otherwise."""

    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    random: Callable[[], float]
    opened_at: float

    def since_open(self) -> float:
        """Seconds since the engine opened (event and record times)."""
        return self.clock() - self.opened_at


@dataclass(frozen=True)
class SharedState:
    """What all jobs of one engine share: the server's client, its gate, its learnt sizes.

    Attributes:
        config: The engine's settings.
        client: The open traces client.
        scheduler: The gate (slots, pause, rate) and the concurrency limit behind it.
        budget: The run-wide retry budget.
        sizers: One batch sizer per kind of call (``"cutoff"``, ``"ids"``), shared by every
            job whose mode feeds it (see :attr:`._modes.Mode.sizer`).
        runtime: The clock, sleep and random source.
        emit: Sends an event to the engine's hooks.
    """

    config: EngineConfig
    client: TracesClient
    scheduler: Scheduler
    budget: RetryBudget
    sizers: Mapping[str, BatchSizer]
    runtime: Runtime
    emit: Callable[[Event], None]
