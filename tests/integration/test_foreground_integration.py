"""The canary and the throttle hook against a real ``mlflow server``: exact deletions, and no
delete before the hook says go."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from async_trace_delete import DeleteSpec, Event, ForegroundChanged
from tests.integration.test_engine_integration import (
    ids,
    make_engine,
    new_experiment,
    seed,
)
from tests.support.mlflow_server import MlflowServer
from tests.support.seed import remaining_ids


class _Hook(http.server.BaseHTTPRequestHandler):
    hold_until = 0.0
    asked: list[tuple[float, int]]

    def do_GET(self) -> None:
        status = 503 if time.monotonic() < type(self).hold_until else 200
        type(self).asked.append((time.monotonic(), status))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def throttle_url() -> Iterator[type[_Hook]]:
    hook = type("Hook", (_Hook,), {"asked": [], "hold_until": 0.0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), hook)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/throttle"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.asyncio
async def test_a_held_throttle_url_delays_every_delete_and_the_run_stays_exact(
    mlflow_server: MlflowServer, throttle_url: type[_Hook]
) -> None:
    """The hook answers 503 for 2 s: the run takes at least that long, deletes exactly the
    old traces, and the hook was asked until it said go."""
    experiment_id = await new_experiment(mlflow_server.url)
    traces, cutoff = seed(mlflow_server, experiment_id, 300, 20)
    started = time.monotonic()
    throttle_url.hold_until = started + 2.0
    url = throttle_url.url  # type: ignore[attr-defined]
    async with make_engine(mlflow_server.url, throttle_url=url, throttle_interval=0.2) as engine:
        report = await engine.run(
            [DeleteSpec(experiment_id=experiment_id, max_timestamp_millis=cutoff)]
        )
    assert time.monotonic() - started >= 2.0
    statuses = [status for _, status in throttle_url.asked]
    assert statuses[0] == 503
    assert 200 in statuses
    assert report.jobs[0].deleted == 300
    assert await remaining_ids(mlflow_server.url, experiment_id) == ids(traces[300:])


@pytest.mark.asyncio
async def test_a_foreground_budget_run_on_a_real_server_is_exact(
    mlflow_server: MlflowServer,
) -> None:
    """With canaries every 50 ms and a budget no canary can meet (1 ms), the engine yields to
    its floor and still deletes exactly the old traces of its experiment."""
    experiment_id = await new_experiment(mlflow_server.url)
    traces, cutoff = seed(mlflow_server, experiment_id, 2_000, 20)
    events: list[Event] = []
    async with make_engine(
        mlflow_server.url,
        hooks=[events.append],
        foreground_budget=0.001,
        canary_interval=0.05,
        initial_batch_size=200,
        min_batch_size=50,
    ) as engine:
        report = await engine.run(
            [DeleteSpec(experiment_id=experiment_id, max_timestamp_millis=cutoff)]
        )
    assert report.jobs[0].deleted == 2_000
    assert await remaining_ids(mlflow_server.url, experiment_id) == ids(traces[2_000:])
    assert any(isinstance(event, ForegroundChanged) for event in events)
