"""An engine wired to the simulated server, and the small builders the engine tests share.

Everything runs on the simulated server's fake clock with fixed jitter, so a test that
retries, pauses or backs off for minutes takes milliseconds. Below the engine builders: the
faults, specs, checks and scheduling helpers the unattended-run tests share.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import httpx

from async_trace_delete import ClientConfig, DeleteSpec, Engine, EngineConfig, Hook, JobReport
from tests.support.simulated_server import (
    BASE_MS,
    SIM_URL,
    FakeClock,
    Fault,
    SimTrace,
    SimulatedServer,
    sim_traces,
)

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


def id_chunks(size: int) -> dict[str, Any]:
    """Config settings that make every ID chunk ``size`` IDs."""
    return {"initial_id_chunk": size, "max_id_chunk": size}


def ids_spec(experiment_id: str, traces: Sequence[SimTrace]) -> DeleteSpec:
    """A job deleting exactly these traces by ID."""
    return DeleteSpec(experiment_id=experiment_id, trace_ids=[t.trace_id for t in traces])


def throttled(retry_after: str | None = None, *, hold: anyio.Event | None = None) -> Fault:
    """A 429, with a ``Retry-After`` if given."""
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Fault(status=429, error_code="REQUEST_LIMIT_EXCEEDED", headers=headers, hold=hold)


def denied() -> Fault:
    """A 403 as MLflow's basic-auth app answers it (plain text)."""
    return Fault(status=403, text="Permission denied")


def gateway_lost() -> Fault:
    """A gateway's 502 after MLflow did the work: the answer is lost."""
    return Fault(status=502, text="<html>502 Bad Gateway</html>", apply_first=True)


def timeout_after_work() -> Fault:
    """A read timeout after the server did the work: the answer is lost."""
    return Fault(apply_first=True, raise_error=httpx.ReadTimeout)


def bracketed(job: JobReport, lost: int) -> bool:
    """What the server lost lies between the job's confirmed and possible deletions."""
    return job.deleted <= lost <= job.deleted + job.ambiguous


async def turns_until(condition: Callable[[], bool], turns: int = 10_000) -> None:
    """Let the other tasks run until ``condition`` holds (a bounded number of turns)."""
    for _ in range(turns):
        if condition():
            return
        await anyio.lowlevel.checkpoint()
    raise AssertionError("the condition never held")


class PatientSleep:
    """The fake clock's sleep, except that a sleep of ``long`` seconds or more first lets the
    other tasks run for ``turns`` turns before the clock moves by it, as a real sleep would.

    A stop can then cut it short, and the clock never moves by the part not slept.
    ``long_sleeps`` counts the long sleeps begun.
    """

    def __init__(self, clock: FakeClock, *, long: float, turns: int = 5_000) -> None:
        self.clock = clock
        self.long = long
        self.turns = turns
        self.long_sleeps = 0

    async def __call__(self, seconds: float) -> None:
        if seconds >= self.long:
            self.long_sleeps += 1
            for _ in range(self.turns):
                await anyio.lowlevel.checkpoint()
        await self.clock.sleep(seconds)
