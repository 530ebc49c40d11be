"""The foreground probe: another user of the tracking server, timing what the cleanup costs them.

Every ~50 ms the probe sends one request into its own experiment, alternating a read (a search
page of 10 traces) and a write (a v3 trace creation). It is open-loop: a request is sent on
every tick even when earlier ones have not come back yet, so a server stalled by a long delete
shows up as the latency every waiting user sees, not as a few slow samples.

Up to `MAX_IN_FLIGHT` requests are outstanding; a tick beyond that is not sent. Such a tick is a
user the server could not even answer, so it is a *stall*, counted in the percentiles with a
lower bound of its latency: the time from its tick until a slot freed, the earliest it could have
been sent (its real latency would add the request's own). Left out, as before issue 17, it
flattered exactly the variants that stall the server. Errors are answers other than 200 and
transport errors, nothing else.

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
    """One probe tick: when it was due (s since the probe started) and how long its user waited.

    `stalled` ticks were never sent (too many requests outstanding): their latency is the lower
    bound described in the module docstring.
    """

    kind: str
    sent_at: float
    latency: float
    error: str | None = None
    stalled: bool = False


@dataclass(frozen=True)
class LatencySummary:
    """Percentiles over every tick of the probe (sent and stalled), in seconds.

    Attributes:
        count: ticks counted in the percentiles (`sent` + `stalled`).
        sent: requests sent and answered (or failed).
        stalled: ticks not sent because `MAX_IN_FLIGHT` requests were outstanding.
        errors: sent requests answered with a non-200 status or a transport error.
    """

    count: int
    sent: int
    stalled: int
    errors: int
    p50: float | None
    p99: float | None
    max: float | None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "count": self.count,
            "sent": self.sent,
            "stalled": self.stalled,
            "errors": self.errors,
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


def summarize(samples: list[ProbeSample]) -> LatencySummary:
    """Summarize ticks: a failed request counts with its latency (the user waited that long),
    a stalled tick with its lower bound."""
    latencies = [sample.latency for sample in samples]
    stalled = sum(1 for sample in samples if sample.stalled)
    return LatencySummary(
        count=len(samples),
        sent=len(samples) - stalled,
        stalled=stalled,
        errors=sum(1 for sample in samples if sample.error is not None),
        p50=percentile(latencies, 0.50),
        p99=percentile(latencies, 0.99),
        max=max(latencies) if latencies else None,
    )


@dataclass
class StallBook:
    """Ticks not sent, waiting for a slot: each is settled when the next request completes."""

    pending: list[tuple[str, float]] = field(default_factory=list)

    def skip(self, kind: str, due: float) -> None:
        """A tick of `kind` due at `due` could not be sent."""
        self.pending.append((kind, due))

    def slot_freed(self, now: float) -> list[ProbeSample]:
        """A request completed at `now`: every pending tick could have been sent by then."""
        settled = [ProbeSample(kind, due, now - due, stalled=True) for kind, due in self.pending]
        self.pending.clear()
        return settled


@dataclass
class Probe:
    """Reads and writes against `experiment_id` every `interval` seconds until stopped."""

    base_url: str
    experiment_id: str
    interval: float = DEFAULT_INTERVAL_SECONDS
    auth: tuple[str, str] | None = None
    samples: list[ProbeSample] = field(default_factory=list)
    _stalls: StallBook = field(default_factory=StallBook)
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
                    self._stalls.skip(kind, tick * self.interval)
                else:
                    self._in_flight += 1
                    group.start_soon(self._request, client, kind, started)
                tick += 1
                # Sleep to the next tick of a fixed grid, so slow ticks don't drift the rate.
                delay = started + tick * self.interval - time.perf_counter()
                with anyio.move_on_after(max(delay, 0.0)):
                    await stop.wait()
        # Ticks still waiting when the requests in flight all came back: settled then.
        self.samples.extend(self._stalls.slot_freed(time.perf_counter() - started))

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
        now = time.perf_counter()
        self.samples.append(ProbeSample(kind, sent - started, now - sent, error))
        self.samples.extend(self._stalls.slot_freed(now - started))

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
        return summarize([s for s in self.samples if kind is None or s.kind == kind])
