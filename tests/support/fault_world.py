"""What each fault test seeds and checks, and the engines and CLI commands it runs.

A `World` is fresh experiments on the real server (old traces at or before the cutoff, new
ones after it, and a bystander experiment no job names); `check_invariants` compares the
server's truth with the reports afterwards.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from async_trace_delete import (
    ClientConfig,
    DeleteSpec,
    EngineConfig,
    JobReport,
    JobState,
    RetryPolicy,
)
from tests.support.fault_proxy import FaultKind, FaultProxy
from tests.support.fault_tally import violation
from tests.support.mlflow_server import MlflowServer
from tests.support.seed import create_experiment, make_traces, remaining_ids, seed_traces_sql

BASE_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
DELETE = "delete-traces"
REQUEST_TIMEOUT = 3.0  # seconds one delete call may take before it counts as timed out
PROMPTLY = 3.0  # seconds within which a cancelled job or process must be gone


# -- the world each test seeds -----------------------------------------------------------------


@dataclass
class Experiment:
    """One seeded experiment: IDs of its traces at or before the cutoff and after it."""

    experiment_id: str
    old: list[str]  # oldest first
    new: list[str]

    @property
    def all_ids(self) -> set[str]:
        """Every trace seeded into it."""
        return {*self.old, *self.new}


@dataclass
class World:
    """Target experiments, a bystander no job names, and the cutoff between old and new."""

    url: str
    cutoff: int
    targets: list[Experiment]
    bystander: Experiment

    async def remaining(self, experiment: Experiment) -> set[str]:
        """What the server still holds of the experiment (read straight, not via the proxy)."""
        return await remaining_ids(self.url, experiment.experiment_id)


async def seed_world(
    server: MlflowServer, *, targets: int = 1, old: int = 300, new: int = 40
) -> World:
    """Fresh experiments with ``old`` traces at or before the cutoff and ``new`` after it.

    The last old trace sits exactly on the cutoff and the first new one 1 ms after it.
    """
    assert server.db_path is not None, "the session server runs on SQLite"
    cutoff = BASE_MS + old - 1
    experiments = []
    for index in range(targets + 1):
        name = f"faults-{index}-{uuid.uuid4().hex[:12]}"
        experiment_id = await create_experiment(server.url, name)
        old_traces = make_traces(old, start_ms=BASE_MS)
        new_traces = make_traces(new, start_ms=cutoff + 1)
        seed_traces_sql(server.db_path, experiment_id, [*old_traces, *new_traces])
        ordered = sorted(old_traces, key=lambda trace: (trace.timestamp_ms, trace.trace_id))
        experiments.append(
            Experiment(
                experiment_id,
                old=[trace.trace_id for trace in ordered],
                new=[trace.trace_id for trace in new_traces],
            )
        )
    return World(server.url, cutoff, experiments[:-1], experiments[-1])


async def check_invariants(
    world: World,
    reports: Mapping[str, JobReport],
    *,
    transient: bool,
) -> dict[str, int]:
    """Check the invariants against the server; return what each target experiment lost.

    Args:
        world: The seeded experiments.
        reports: The cutoff job of each target experiment, by experiment ID.
        transient: The faults were all transient: every uncapped job must have completed
            and deleted every old trace.
    """
    lost: dict[str, int] = {}
    for experiment in world.targets:
        left = await world.remaining(experiment)
        report = reports[experiment.experiment_id]
        label = f"experiment {experiment.experiment_id}"
        violation(set(experiment.new) <= left, f"{label}: a trace newer than the cutoff went")
        violation(left <= experiment.all_ids, f"{label}: unknown traces appeared")
        gone = experiment.all_ids - left
        # Oldest first: what went is a prefix of the old traces.
        violation(gone == set(experiment.old[: len(gone)]), f"{label}: not the oldest traces went")
        lost[experiment.experiment_id] = len(gone)
        if report.max_traces is not None:
            violation(len(gone) <= report.max_traces, f"{label}: the cap was passed")
        violation(
            report.deleted <= len(gone) <= report.deleted + report.ambiguous,
            f"{label}: the server lost {len(gone)}, the report says {report.deleted} "
            f"deleted + {report.ambiguous} ambiguous",
        )
        if report.ambiguous == 0:
            violation(len(gone) == report.deleted, f"{label}: the count is not exact")
        if transient and report.max_traces is None:
            violation(report.state is JobState.COMPLETED, f"{label}: {report.error}")
            violation(not left & set(experiment.old), f"{label}: old traces were left behind")
    bystander_left = await world.remaining(world.bystander)
    violation(bystander_left == world.bystander.all_ids, "the bystander experiment lost traces")
    return lost


# -- engines and proxies -----------------------------------------------------------------------


def engine_config(url: str, **settings: Any) -> EngineConfig:
    """Fast retries and small batches, so a fault test takes seconds."""
    retry = settings.pop("retry", None) or RetryPolicy(
        initial_backoff=0.05, max_backoff=0.5, max_attempts=20, max_elapsed=60.0
    )
    values: dict[str, Any] = {
        "rate_limit": 50.0,
        "min_batch_size": 25,
        "initial_batch_size": 50,
        "max_batch_size": 200,
        "retry_budget": 200,
        "request_timeout": REQUEST_TIMEOUT,
        **settings,
    }
    return EngineConfig(client=ClientConfig(tracking_uri=url, timeout=30.0), retry=retry, **values)


def cutoff_job(experiment: Experiment, cutoff: int, **extra: Any) -> DeleteSpec:
    """A cutoff job on one experiment."""
    return DeleteSpec(experiment_id=experiment.experiment_id, max_timestamp_millis=cutoff, **extra)


def by_experiment(reports: Sequence[JobReport]) -> dict[str, JobReport]:
    """Job reports keyed by experiment ID."""
    return {report.experiment_id or "": report for report in reports}


def delete_requests(proxy: FaultProxy) -> list[float]:
    """When each delete request reached the proxy (monotonic seconds), in order."""
    return [entry.started for entry in proxy.stats.requests(DELETE)]


class ExperimentRouter(httpx.AsyncBaseTransport):
    """Sends the delete calls of some experiments to another address (their own proxy).

    The fault proxy scripts by path only; routing by experiment lets one job meet faults
    while the others talk to the server directly.
    """

    def __init__(self, routes: Mapping[str, str]) -> None:
        self._routes = {key: httpx.URL(value) for key, value in routes.items()}
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Rewrite the address of a routed delete call, then send it."""
        if request.url.path.endswith(DELETE):
            target = self._routes.get(json.loads(request.content).get("experiment_id"))
            if target is not None:
                request.url = request.url.copy_with(host=target.host, port=target.port)
                request.headers["Host"] = f"{target.host}:{target.port}"
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the underlying transport."""
        await self._inner.aclose()


def cli_delete_command(
    experiment: Experiment, cutoff: int, url: str, audit_log: Path, *flags: str
) -> list[str]:
    """The CLI deleting an experiment's traces up to the cutoff, for real, with a JSON report
    and an audit log; ``flags`` come before ``--json --execute``."""
    return [
        sys.executable,
        "-m",
        "async_trace_delete",
        "delete",
        "--experiment-id",
        experiment.experiment_id,
        "--max-timestamp-millis",
        str(cutoff),
        "--tracking-uri",
        url,
        "--audit-log",
        str(audit_log),
        *flags,
        "--json",
        "--execute",
    ]


async def wait_for_stuck_delete(proxy: FaultProxy, within: float = 30.0) -> None:
    """Wait until a delayed delete call was carried out upstream and is being held."""
    with anyio.fail_after(within):
        while not any(  # noqa: ASYNC110 - the proxy's log has no event to wait on
            entry.fault is FaultKind.DELAY and entry.upstream_status == 200
            for entry in proxy.stats.requests(DELETE)
        ):
            await anyio.sleep(0.02)
