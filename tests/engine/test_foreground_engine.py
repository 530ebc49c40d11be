"""The engine paced by what other clients feel: the canary and the throttle hook.

On the simulated server with a :class:`SteppedClock` (a call reaches the server when it was
sent), behind a transport that times the canary like a busy server would: the bigger the
last delete, the slower another client's request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import httpx
import pytest

from async_trace_delete import (
    ClientConfig,
    Engine,
    EngineConfig,
    Event,
    ForegroundChanged,
    JobState,
    TraceDeleteError,
)
from tests.support.sim_engine import NOW_MS, cutoff_spec, seeded
from tests.support.simulated_server import SIM_URL, LatencyModel, SimulatedServer
from tests.support.stepped_clock import SteppedClock

THROTTLE_URL = "http://throttle.test/ok"
CANARY_SECONDS_PER_TRACE = 0.001  # a canary waits for the delete in the database


class BusyServer:
    """The simulated server, a canary slowed by the last delete's size, and a throttle URL."""

    def __init__(self, old: int) -> None:
        self.clock = SteppedClock()
        self.server = SimulatedServer(self.clock, latency=LatencyModel(per_trace=0.0005))
        self.experiment_id, self.cutoff = seeded(self.server, old, 50)
        self.canaries: list[float] = []
        self.throttle_answers: list[int] = []  # next answers of the throttle URL (then 200)
        self.throttle_asked: list[float] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == THROTTLE_URL:
            self.throttle_asked.append(self.clock())
            status = self.throttle_answers.pop(0) if self.throttle_answers else 200
            return httpx.Response(status, text="go" if status == 200 else "hold")
        if request.url.path.endswith("/traces/search") and _max_results(request) == 1:
            self.canaries.append(self.clock())
            last = self.server.deletes[-1].max_traces if self.server.deletes else 0
            await self.clock.sleep(CANARY_SECONDS_PER_TRACE * (last or 0))
        return await self.server.handle(request)

    def engine(
        self,
        hooks: list[Any] | None = None,
        handler: Callable[[httpx.Request], Coroutine[None, None, httpx.Response]] | None = None,
        **settings: Any,
    ) -> Engine:
        return Engine(
            EngineConfig(client=ClientConfig(tracking_uri=SIM_URL), rate_limit=1000.0, **settings),
            hooks=hooks or [],
            transport=httpx.MockTransport(handler or self.handle),
            clock=self.clock,
            sleep=self.clock.sleep,
            random=lambda: 0.5,
            wall_clock_ms=lambda: NOW_MS,
        )


def _max_results(request: httpx.Request) -> int | None:
    try:
        return int(json.loads(request.content or b"{}").get("max_results", 0))
    except (ValueError, AttributeError):
        return None


@pytest.mark.asyncio
async def test_without_a_budget_no_canary_is_sent() -> None:
    """The default engine sends no canary: nothing but its own calls reach the server."""
    busy = BusyServer(5_000)
    async with busy.engine() as engine:
        report = await engine.run([cutoff_spec(busy.experiment_id, busy.cutoff)])
    assert busy.canaries == []
    assert report.jobs[0].deleted == busy.server.deleted(busy.experiment_id) == 5_000


@pytest.mark.asyncio
async def test_slow_canaries_shrink_the_batches_until_others_are_within_budget() -> None:
    """Batches of ~2,000 make another client wait 2 s; with a 0.5 s budget the engine cuts
    its share until canaries are within it (the bound of each call to half the budget is
    not enough alone: a 500-trace batch makes a canary wait 0.5 s), deletes exactly the old
    traces, and reports each change as an event."""
    busy = BusyServer(30_000)
    events: list[Event] = []
    async with busy.engine(
        hooks=[events.append], foreground_budget=0.5, initial_batch_size=1_000
    ) as engine:
        report = await engine.run([cutoff_spec(busy.experiment_id, busy.cutoff)])
    job = report.jobs[0]
    assert job.state is JobState.COMPLETED
    assert job.deleted == busy.server.deleted(busy.experiment_id) == 30_000
    assert len(busy.server.remaining(busy.experiment_id)) == 50  # the newer ones stay
    changes = [event for event in events if isinstance(event, ForegroundChanged)]
    assert changes
    assert min(change.share for change in changes) <= 0.5
    assert len(busy.canaries) >= 5
    sizes = [call.max_traces or 0 for call in busy.server.deletes]
    assert max(sizes[:3]) >= 1_000  # before the canary spoke
    assert max(sizes[-5:]) <= 500  # within 0.5 s of the canary's wait


@pytest.mark.parametrize(("budget", "steered_to"), [(None, 1.0), (2.0, 1.0), (0.5, 0.25)])
@pytest.mark.asyncio
async def test_a_budget_bounds_each_call_even_when_reads_stay_fast(
    budget: float | None, steered_to: float
) -> None:
    """On SQLite and MySQL another client's write waits for a whole delete while its reads
    may not: with every canary fast, a 0.5 s budget still steers each call to 0.25 s (half
    the budget); a budget above twice the target leaves the target alone."""
    busy = BusyServer(40_000)

    async def reads_never_wait(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/traces/search") and _max_results(request) == 1:
            busy.canaries.append(busy.clock())
        return await busy.server.handle(request)

    settings: dict[str, Any] = {} if budget is None else {"foreground_budget": budget}
    async with busy.engine(handler=reads_never_wait, **settings) as engine:
        assert engine.config.call_latency_target == steered_to
        report = await engine.run([cutoff_spec(busy.experiment_id, busy.cutoff)])
    assert report.jobs[0].deleted == busy.server.deleted(busy.experiment_id) == 40_000
    assert len(busy.server.remaining(busy.experiment_id)) == 50
    steady = [call.max_traces or 0 for call in busy.server.deletes][4:-1]
    per_trace = 0.0005  # BusyServer's latency model
    assert steady
    assert all(0.7 * steered_to <= size * per_trace <= 1.2 * steered_to for size in steady)


@pytest.mark.asyncio
async def test_a_throttle_url_that_says_hold_stops_every_call_until_it_says_go() -> None:
    """The hook answers 503 three times: no delete is sent before its first 200, then the
    job runs to the end exactly."""
    busy = BusyServer(3_000)
    busy.throttle_answers = [503, 503, 503]
    async with busy.engine(throttle_url=THROTTLE_URL, throttle_interval=1.0) as engine:
        report = await engine.run([cutoff_spec(busy.experiment_id, busy.cutoff)])
    assert len(busy.throttle_asked) >= 4
    go_at = busy.throttle_asked[3]
    assert busy.server.deletes
    assert busy.server.deletes[0].started_at >= go_at
    assert report.jobs[0].deleted == busy.server.deleted(busy.experiment_id) == 3_000


@pytest.mark.asyncio
async def test_an_unreachable_throttle_url_holds_the_engine() -> None:
    """A hook that cannot be reached holds like a "no": for 30 s not one request (not even
    the experiment lookup) reaches the server, and a stop then ends the run with nothing
    deleted."""
    busy = BusyServer(1_000)

    async def unreachable(request: httpx.Request) -> httpx.Response:
        if request.url.host == "throttle.test":
            busy.throttle_asked.append(busy.clock())
            raise httpx.ConnectError("refused", request=request)
        return await busy.handle(request)

    engine = busy.engine(handler=unreachable, throttle_url=THROTTLE_URL)
    outcome: list[object] = []

    async def run() -> None:
        try:
            outcome.append(await engine.run([cutoff_spec(busy.experiment_id, busy.cutoff)]))
        except TraceDeleteError as error:
            outcome.append(error)

    async with engine, anyio.create_task_group() as group:
        group.start_soon(run)
        await busy.clock.sleep(30.0)
        assert busy.server.calls == []
        engine.stop_all()
    assert len(busy.throttle_asked) >= 30
    assert len(outcome) == 1
    assert "nothing was deleted" in str(outcome[0])
    assert busy.server.deleted(busy.experiment_id) == 0


def test_the_throttle_url_is_never_shown() -> None:
    """A throttle URL with a token in it is a secret: not in the config's repr."""
    config = EngineConfig(throttle_url="https://ops.example/throttle?token=s3cret")
    assert "s3cret" not in repr(config)
    assert "s3cret" not in str(config.model_dump())


@pytest.mark.asyncio
async def test_a_budget_and_a_throttle_url_together() -> None:
    """Both watchers at once (each its own cancel scope): the run is exact and closes."""
    busy = BusyServer(3_000)
    busy.throttle_answers = [503]
    async with busy.engine(
        foreground_budget=0.5, throttle_url=THROTTLE_URL, throttle_interval=1.0
    ) as engine:
        report = await engine.run([cutoff_spec(busy.experiment_id, busy.cutoff)])
    assert report.jobs[0].deleted == busy.server.deleted(busy.experiment_id) == 3_000
    assert busy.canaries
    assert busy.server.deletes[0].started_at >= busy.throttle_asked[1]
