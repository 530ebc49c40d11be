"""Measure the engine's own cost per delete call on a zero-latency in-memory transport.

Runs N single-trace cutoff calls through ``Engine`` (rate limit 10,000/s, batch size pinned
to 1) and the same N calls directly with ``TracesClient`` on the same transport, alternating,
and prints the best calls/s of each. One core, no network, no server: the difference is what
the engine's scheduling, pacing, sizing, retry bookkeeping and events cost per call.

    .venv/bin/python scripts/engine_overhead.py [--calls 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

import anyio
import httpx

from async_trace_delete import ClientConfig, DeleteSpec, Engine, EngineConfig, TracesClient

URL = "http://overhead.invalid"
CUTOFF_MS = 1_704_067_200_000


def answer(request: httpx.Request) -> httpx.Response:
    """A server that exists and always deletes one trace, instantly."""
    if request.url.path.endswith("/experiments/get"):
        return httpx.Response(200, json={"experiment": {"experiment_id": "1", "name": "e"}})
    return httpx.Response(200, json={"traces_deleted": 1})


async def through_engine(transport: httpx.AsyncBaseTransport, calls: int) -> float:
    """Seconds for ``calls`` one-trace deletes through the engine."""
    config = EngineConfig(
        client=ClientConfig(tracking_uri=URL),
        rate_limit=10_000,
        min_batch_size=1,
        max_batch_size=1,
        initial_batch_size=1,
    )
    async with Engine(config, transport=transport) as engine:
        started = time.perf_counter()
        report = await engine.run(
            [DeleteSpec(experiment_id="1", max_timestamp_millis=CUTOFF_MS, max_traces=calls)]
        )
        elapsed = time.perf_counter() - started
    assert report.calls == calls, report
    return elapsed


async def direct(transport: httpx.AsyncBaseTransport, calls: int) -> float:
    """Seconds for ``calls`` one-trace deletes made one after another with TracesClient."""
    async with TracesClient(ClientConfig(tracking_uri=URL), transport=transport) as client:
        started = time.perf_counter()
        for _ in range(calls):
            await client.delete_traces("1", max_timestamp_millis=CUTOFF_MS, max_traces=1)
        return time.perf_counter() - started


async def main(calls: int, rounds: int) -> None:
    """Alternate both ways ``rounds`` times and print the best of each."""
    transport = httpx.MockTransport(answer)
    engine_times: list[float] = []
    direct_times: list[float] = []
    for _ in range(rounds):
        engine_times.append(await through_engine(transport, calls))
        direct_times.append(await direct(transport, calls))
    engine_best, direct_best = min(engine_times), min(direct_times)
    print(f"calls per run:        {calls}")
    print(f"engine:               {calls / engine_best:,.0f} calls/s")
    print(f"TracesClient direct:  {calls / direct_best:,.0f} calls/s")
    print(f"engine cost per call: {(engine_best - direct_best) / calls * 1e6:,.0f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    anyio.run(main, arguments.calls, arguments.rounds)
