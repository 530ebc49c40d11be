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
from ._concurrency import ConcurrencyController, FixedLimit
from ._config import EngineConfig
from ._controls import ConcurrencyLimit, Sizer
from ._events import Event
from ._foreground import SharedSizer
from ._pacing import pacer_for
from ._retry import RetryBudget
from ._scheduler import Scheduler

__all__ = ["Controls", "Runtime", "SharedState", "open_shared"]


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
    sizers: Mapping[str, Sizer]
    runtime: Runtime
    emit: Callable[[Event], None]


@dataclass(frozen=True)
class Controls:
    """Controllers the user gave the engine instead of the ones its config describes."""

    limit: ConcurrencyLimit | None = None
    cutoff_sizer: Sizer | None = None
    id_sizer: Sizer | None = None


def open_shared(
    config: EngineConfig,
    client: TracesClient,
    controls: Controls,
    runtime: Runtime,
    emit: Callable[[Event], None],
) -> SharedState:
    """Build what the engine's jobs share (inside the running loop: the pacer may bind to it).

    The controllers are the user's where given; otherwise a :class:`ConcurrencyController`
    when ``adaptive_concurrency`` and ``max_concurrency > 1`` (else a :class:`FixedLimit`),
    and one :class:`BatchSizer` per kind of call on the config's batch settings.
    """
    limit = controls.limit
    if limit is None:
        limit = (
            ConcurrencyController(
                max_limit=config.max_concurrency, target_latency=config.call_latency_target
            )
            if config.adaptive_concurrency and config.max_concurrency > 1
            else FixedLimit(config.max_concurrency)
        )
    cutoff_sizer = controls.cutoff_sizer
    if cutoff_sizer is None:
        cutoff_sizer = BatchSizer(
            target_latency=config.call_latency_target,
            min_size=config.min_batch_size,
            max_size=config.max_batch_size,
            initial_size=config.initial_batch_size,
        )
    id_sizer = controls.id_sizer
    if id_sizer is None:
        id_sizer = BatchSizer(
            target_latency=config.call_latency_target,
            min_size=1,
            max_size=config.max_id_chunk,
            initial_size=config.initial_id_chunk,
        )
    scheduler = Scheduler(
        limit=limit,
        pacer=pacer_for(config.rate_limit, clock=runtime.clock, sleep=runtime.sleep),
        read_pacer=pacer_for(config.read_rate_limit, clock=runtime.clock, sleep=runtime.sleep),
        read_slots=config.max_concurrency,
        file_pacer=pacer_for(config.artifact_rate_limit, clock=runtime.clock, sleep=runtime.sleep),
        file_slots=config.max_concurrency,
        clock=runtime.clock,
        sleep=runtime.sleep,
        emit=emit,
        origin=runtime.opened_at,
    )
    if config.foreground_budget is not None:  # batches follow the canary's share
        cutoff_sizer = SharedSizer(cutoff_sizer, lambda: scheduler.share)
        id_sizer = SharedSizer(id_sizer, lambda: scheduler.share)
    return SharedState(
        config=config,
        client=client,
        scheduler=scheduler,
        budget=RetryBudget(initial=config.retry_budget, ratio=config.retry_budget_ratio),
        sizers={"cutoff": cutoff_sizer, "ids": id_sizer},
        runtime=runtime,
        emit=emit,
    )
