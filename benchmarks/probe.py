"""The foreground probe: another user of the tracking server, timing what the cleanup costs them.

Every ~50 ms the probe sends one request into its own experiment, alternating a read (a search
page of 10 traces) and a write (a v3 trace creation). It is open-loop: a request is sent on
every tick even when earlier ones have not come back yet (up to a cap, beyond which ticks are
counted as skipped), so a server stalled by a long delete shows up as the latency every waiting
user sees, not as a few slow samples.

Why alternate instead of a read and a write every tick: on `mlflow server` (one uvicorn worker,
one GIL) a trace write costs ~25 ms and a search ~15 ms of server CPU; 40 requests/s would take
~80% of the server by themselves and the probe would mostly measure itself.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from tests.support.seed import format_request_time

SEARCH_PATH = "/api/3.0/mlflow/traces/search"
CREATE_TRACE_PATH = "/api/3.0/mlflow/traces"
DEFAULT_INTERVAL_SECONDS = 0.05
REQUEST_TIMEOUT_SECONDS = 30.0
MAX_IN_FLIGHT = 8


@dataclass(frozen=True)
class ProbeSample:
    """One probe request: when it was sent (s since the probe started), how long it took."""

    kind: str
    sent_at: float
    latency: float
    error: str | None = None


@dataclass(frozen=True)
class LatencySummary:
    """Percentiles of a set of probe requests, in seconds."""

    count: int
    errors: int
    skipped: int
    p50: float | None
    p99: float | None
    max: float | None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "count": self.count,
            "errors": self.errors,
            "skipped": self.skipped,
            "p50_s": self.p50,
            "p99_s": self.p99,
            "max_s": self.max,
        }


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile (no interpolation: every reported value was observed)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summarize(samples: list[ProbeSample], skipped: int = 0) -> LatencySummary:
    """Summarize samples; a failed request counts with its latency (the user waited that long)."""
    latencies = [sample.latency for sample in samples]
    return LatencySummary(
        count=len(samples),
        errors=sum(1 for sample in samples if sample.error is not None),
        skipped=skipped,
        p50=percentile(latencies, 0.50),
        p99=percentile(latencies, 0.99),
        max=max(latencies) if latencies else None,
    )


@dataclass
class Probe:
    """Reads and writes against `experiment_id` every `interval` seconds until stopped."""

    base_url: str
    experiment_id: str
    interval: float = DEFAULT_INTERVAL_SECONDS
    auth: tuple[str, str] | None = None
    samples: list[ProbeSample] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=lambda: {"read": 0, "write": 0})
    _in_flight: int = 0

    async def run(self, stop: anyio.Event) -> None:
        """Probe until `stop` is set; requests still in flight then are awaited and recorded."""
        limits = httpx.Limits(max_connections=MAX_IN_FLIGHT + 2)
        async with (
            httpx.AsyncClient(
                base_url=self.base_url,
                timeout=REQUEST_TIMEOUT_SECONDS,
                limits=limits,
                auth=self.auth,
            ) as client,
            anyio.create_task_group() as group,
        ):
            started = time.perf_counter()
            tick = 0
            while not stop.is_set():
                kind = ("read", "write")[tick % 2]
                if self._in_flight >= MAX_IN_FLIGHT:
                    self.skipped[kind] += 1
                else:
                    self._in_flight += 1
                    group.start_soon(self._request, client, kind, started)
                tick += 1
                # Sleep to the next tick of a fixed grid, so slow ticks don't drift the rate.
                delay = started + tick * self.interval - time.perf_counter()
                with anyio.move_on_after(max(delay, 0.0)):
                    await stop.wait()

    async def _request(self, client: httpx.AsyncClient, kind: str, started: float) -> None:
        sent = time.perf_counter()
        error: str | None = None
        try:
            if kind == "read":
                response = await client.post(SEARCH_PATH, json=self._search_body())
            else:
                response = await client.post(CREATE_TRACE_PATH, json=self._trace_body())
            if response.status_code != 200:
                error = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self._in_flight -= 1
        self.samples.append(ProbeSample(kind, sent - started, time.perf_counter() - sent, error))

    def _search_body(self) -> dict[str, Any]:
        return {
            "locations": [
                {
                    "type": "MLFLOW_EXPERIMENT",
                    "mlflow_experiment": {"experiment_id": self.experiment_id},
                }
            ],
            "max_results": 10,
        }

    def _trace_body(self) -> dict[str, Any]:
        now_ms = time.time_ns() // 1_000_000
        return {
            "trace": {
                "trace_info": {
                    "trace_id": f"tr-{uuid.uuid4().hex}",
                    "trace_location": {
                        "type": "MLFLOW_EXPERIMENT",
                        "mlflow_experiment": {"experiment_id": self.experiment_id},
                    },
                    "request_time": format_request_time(now_ms),
                    "execution_duration": "0.012s",
                    "state": "OK",
                    "trace_metadata": {"mlflow.trace_schema.version": "3"},
                    "tags": {"probe": "true"},
                }
            }
        }

    def summary(self, kind: str | None = None) -> LatencySummary:
        """Latency summary of the reads, the writes, or both (`kind=None`)."""
        selected = [s for s in self.samples if kind is None or s.kind == kind]
        skipped = sum(self.skipped.values()) if kind is None else self.skipped[kind]
        return summarize(selected, skipped)
