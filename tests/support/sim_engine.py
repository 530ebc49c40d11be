"""An engine wired to the simulated server, and the small builders the engine tests share.

Everything runs on the simulated server's fake clock with fixed jitter, so a test that
retries, pauses or backs off for minutes takes milliseconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from async_trace_delete import ClientConfig, DeleteSpec, Engine, EngineConfig, Hook
from tests.support.simulated_server import BASE_MS, SIM_URL, Fault, SimulatedServer, sim_traces

NOW_MS = BASE_MS + 30 * 86_400_000  # "now" for the engine: well after every seeded trace
FAST = 10_000.0  # the highest rate limit: the limiter is not what these tests look at


def make_engine(
    server: SimulatedServer,
    *,
    hooks: Sequence[Hook] = (),
    sleep: Callable[[float], Awaitable[None]] | None = None,
    random_source: Callable[[], float] = lambda: 0.5,
    **settings: Any,
) -> Engine:
    """An engine wired to the simulated server, its fake clock and sleep, and fixed jitter."""
    values: dict[str, Any] = {"rate_limit": FAST, **settings}
    return Engine(
        EngineConfig(client=ClientConfig(tracking_uri=SIM_URL), **values),
        hooks=hooks,
        transport=server.transport,
        clock=server.clock,
        sleep=sleep if sleep is not None else server.clock.sleep,
        random=random_source,
        wall_clock_ms=lambda: NOW_MS,
    )


def fixed_batches(size: int) -> dict[str, Any]:
    """Config settings that pin the cutoff batch size to ``size``."""
    return {"min_batch_size": size, "max_batch_size": size, "initial_batch_size": size}


def cutoff_spec(experiment_id: str, cutoff: int, **extra: Any) -> DeleteSpec:
    """A cutoff job on one experiment."""
    return DeleteSpec(experiment_id=experiment_id, max_timestamp_millis=cutoff, **extra)


def seeded(server: SimulatedServer, old: int, new: int = 0, *, tag: int = 0) -> tuple[str, int]:
    """An experiment ``exp-<tag>`` with ``old`` traces at or before the returned cutoff and
    ``new`` after it."""
    traces = sim_traces(old + new, tag=tag)
    experiment_id = server.add_experiment(f"exp-{tag}", traces)
    cutoff = BASE_MS + old - 1
    return experiment_id, cutoff


def unavailable(**headers: str) -> Fault:
    """A transient 503 ("database is locked"), MLflow's own JSON error."""
    return Fault(status=503, message="database is locked", headers=headers)
